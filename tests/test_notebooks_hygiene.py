"""Fast checks of the stored notebooks, without a kernel (nbval runs them; this reads them).

Every notebook listed in ``_toc.yml`` must be what ``tools/run_notebooks.py`` writes: a
valid nbformat-4 file with the ``python3`` kernel, the Colab install cell first, every code
cell run once in order in a fresh kernel, no errors, nothing machine-specific in its
outputs, and metadata already normalized. Every notebook in ``book/`` must be listed.
With no notebook in the TOC yet, the per-notebook checks have nothing to check (skipped).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[1]
nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (test extra)")
pytest.importorskip("nbstripout", reason="nbstripout is not installed (test extra)")
pytest.importorskip("nbclient", reason="nbclient is not installed (test extra)")


def _load_regen_script():
    """tools/run_notebooks.py as a module: the template and normalization live there."""
    path = ROOT / "tools" / "run_notebooks.py"
    spec = importlib.util.spec_from_file_location("run_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regen = _load_regen_script()
NOTEBOOKS = regen.toc_notebooks(ROOT)

# Text that differs between machines or runs, so nbval would fail elsewhere (and the
# book would show it): checked in every text output (stream, text/*, SVG, JSON).
VOLATILE = {
    "absolute path": re.compile(r"/(?:work|tmp|home|root|Users|usr|opt|var)/|site-packages"),
    "memory address": re.compile(r"\b0x[0-9a-fA-F]{6,}\b"),
    "version string": re.compile(r"\b\d+\.\d+\.\d+(?:\.?(?:post|dev|rc)\d*)?\b"),
}
BINARY_MIMETYPES = {"image/png", "image/jpeg", "image/gif"}  # base64: random-looking text


def read(path: Path):
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def output_texts(cell):
    """Every text a cell's outputs hold, with the output's kind."""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            yield output.name, output.text
        elif output.output_type in {"display_data", "execute_result"}:
            for mimetype, data in output.data.items():
                if mimetype not in BINARY_MIMETYPES:
                    yield mimetype, data if isinstance(data, str) else repr(data)
        elif output.output_type == "error":
            yield "error", "\n".join(output.traceback)


# One test per notebook; with none listed yet, one skipped test that says so.
notebooks = pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in NOTEBOOKS]
    or [pytest.param(None, marks=pytest.mark.skip(reason="no notebook listed in _toc.yml yet"))],
)


@notebooks
def test_valid_nbformat_4(path):
    nb = read(path)
    assert nb.nbformat == 4, f"nbformat {nb.nbformat}"
    nbformat.validate(nb)


@notebooks
def test_kernel_is_python3(path):
    assert read(path).metadata.get("kernelspec", {}).get("name") == "python3"


@notebooks
def test_first_cell_is_the_colab_template(path):
    nb = read(path)
    assert nb.cells, "empty notebook"
    first = nb.cells[0]
    assert first.cell_type == "code"
    expected = regen.colab_cell_source(ROOT, regen.needed_extras(nb))
    assert first.source == expected, "run tools/run_notebooks.py to rewrite it"
    assert first.metadata.get("tags") == regen.COLAB_TAGS
    assert first.outputs == [], "the Colab cell must print nothing outside Colab"


@notebooks
def test_code_cells_ran_once_in_order(path):
    """Counts 1, 2, 3, ...: the stored outputs come from one top-to-bottom run."""
    counts = [cell.execution_count for cell in code_cells(read(path)) if cell.source.strip()]
    assert counts == list(range(1, len(counts) + 1))


@notebooks
def test_no_error_outputs(path):
    errors = [
        (i, output.get("ename"))
        for i, cell in enumerate(read(path).cells)
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors, f"(cell index, exception): {errors}"


@notebooks
def test_no_volatile_text_in_outputs(path):
    found = [
        f"cell {i} ({kind}): {what}: {match.group(0)!r}"
        for i, cell in enumerate(read(path).cells)
        for kind, text in output_texts(cell)
        for what, pattern in VOLATILE.items()
        for match in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


@notebooks
def test_metadata_is_normalized(path):
    """What ``nbstripout --keep-output --keep-count`` (the regen script's flags) would keep."""
    nb = read(path)
    assert regen.normalize(copy.deepcopy(nb)) == nb, "run tools/run_notebooks.py to normalize it"


def test_every_notebook_in_book_is_in_the_toc():
    in_book = {
        path
        for path in (ROOT / "book").rglob("*.ipynb")
        if not {"_build", ".ipynb_checkpoints"} & set(path.parts)
    }
    orphans = sorted(p.relative_to(ROOT).as_posix() for p in in_book - set(NOTEBOOKS))
    assert not orphans, f"not in _toc.yml (so neither built nor run by the regen script): {orphans}"
