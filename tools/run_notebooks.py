"""Regenerate the stored outputs of the book's notebooks: one command for all of them.

    python tools/run_notebooks.py                      # every notebook listed in _toc.yml
    python tools/run_notebooks.py book/some.ipynb      # just this one
    python tools/run_notebooks.py --check              # run, compare, write nothing

For each notebook it
1. (re)writes the first cell from the Colab template (COLAB_TEMPLATE), filled with the
   repository of ``_config.yml`` (the one place that names it);
2. sets the kernelspec to ``python3`` and runs every cell in a fresh kernel with nbclient,
   in the notebook's folder, without timing metadata (seeding is the notebook's job);
3. normalizes metadata like ``nbstripout --keep-output --keep-count --extra-keys
   "metadata.language_info.version"`` (NBSTRIPOUT_EXTRA_KEYS), so reruns give identical
   files and diffs show only real changes.

A cell that raises stops the run and nothing is written. A notebook whose only changes are
in cells that nbval ignores (``# NBVAL_IGNORE_OUTPUT``, ``# NBVAL_SKIP``: timings) is left
as it is, so reruns do not churn diffs. ``--check`` exits 1 and names the notebooks whose
file would change. tests/test_notebooks_hygiene.py imports the helpers below, so the test
and the script cannot disagree about the template or the metadata.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
import re
import sys

from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
import nbformat
from nbstripout import strip_output
from sphinx_external_toc.parsing import parse_toc_yaml
import yaml

ROOT = Path(__file__).resolve().parents[1]

# The first cell of every notebook. Inside Colab it installs the course package from the
# repository, with the extras the chapter needs; anywhere else it does nothing and prints
# nothing, so nbval passes. tools/colab_emulation.py installs the wheel with these extras.
COLAB_TEMPLATE = """\
import sys
if "google.colab" in sys.modules:  # Colab: install the course package
    %pip install -q "bncourse{extras} @ git+{url}@{branch}\""""
# Not in the built book (nothing above a chapter's title); the Colab edition shows it as a
# collapsed form cell.
COLAB_TAGS = ["remove-cell"]
# A chapter that uses PyTorch (torch itself or bncourse.torch) installs the `torch` extra.
USES_TORCH = re.compile(r"^\s*(import|from)\s+torch\b|\bbncourse\.torch\b|"
                        r"^\s*from\s+bncourse\s+import\s+.*\btorch\b", re.M)

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

# nbstripout's command-line defaults plus the Python version, which differs between
# machines without changing any output.
NBSTRIPOUT_EXTRA_KEYS = [
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
    "metadata.language_info.version",
]


def book_config(root: Path = ROOT) -> dict:
    """The parsed ``_config.yml`` of the book."""
    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in reading order (Markdown pages left out)."""
    site = parse_toc_yaml(root / "_toc.yml")
    paths = []
    for docname in site:  # the root first, then parts and chapters in order
        path = root / docname
        if path.suffix != ".ipynb":
            path = path.with_name(path.name + ".ipynb")
        if path.is_file():
            paths.append(path)
    return paths


def needed_extras(nb: nbformat.NotebookNode) -> list[str]:
    """The extras of the package that the notebook's code needs (its first cell left out)."""
    code = "\n".join(c.source for c in nb.cells[1:] if c.cell_type == "code")
    return ["torch"] if USES_TORCH.search(code) else []


def colab_cell_source(root: Path = ROOT, extras: list[str] = ()) -> str:
    """The source of the first cell, with the repository of ``_config.yml``."""
    repo = book_config(root)["repository"]
    return COLAB_TEMPLATE.format(url=repo["url"].rstrip("/"), branch=repo["branch"],
                                 extras=f"[{','.join(extras)}]" if extras else "")


def set_colab_cell(nb: nbformat.NotebookNode, source: str) -> None:
    """Replace the notebook's Colab cell by ``source``, or insert one in front."""
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(COLAB_TAGS)})
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "code" and "google.colab" in first.source:
        nb.cells[0] = cell
    else:
        nb.cells.insert(0, cell)


def merge_streams(cell: nbformat.NotebookNode) -> None:
    """Join consecutive stream outputs of the same name, in place.

    ipykernel may deliver one print as two stream messages ("text", then "\n") depending on
    when its output buffer flushes; nbval joins them before comparing, and so do we, so the
    stored file does not depend on that timing."""
    merged = []
    for out in cell.get("outputs", []):
        if (merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] = "".join(merged[-1]["text"]) + "".join(out["text"])
        else:
            merged.append(out)
    if "outputs" in cell:
        cell["outputs"] = merged


def normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip volatile metadata in place, keeping outputs and execution counts; join split
    stream outputs."""
    for cell in nb.cells:
        merge_streams(cell)
    return strip_output(
        nb, keep_output=True, keep_count=True, keep_id=False, extra_keys=NBSTRIPOUT_EXTRA_KEYS
    )


def nbval_ignores_output(cell: nbformat.NotebookNode) -> bool:
    """Whether nbval leaves this cell's outputs unchecked (comment marker or tag)."""
    markers = {"NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP"}
    lines = [line.strip() for line in cell.source.splitlines()]
    comments = {line.lstrip("#").strip() for line in lines if line.startswith("#")}
    tags = {tag.replace("-", "_").upper() for tag in cell.metadata.get("tags", [])}
    return cell.cell_type == "code" and bool(markers & (comments | tags))


def same_checked_content(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """Whether two notebooks agree everywhere except the outputs nbval ignores."""

    def checked(nb):
        nb = copy.deepcopy(nb)
        for cell in nb.cells:
            if nbval_ignores_output(cell):
                cell.outputs = []
        return nb

    return checked(a) == checked(b)


def regenerate(path: Path, root: Path = ROOT) -> nbformat.NotebookNode:
    """The notebook at ``path`` with a fresh Colab cell, fresh outputs, normalized."""
    nb = nbformat.read(path, as_version=4)
    set_colab_cell(nb, colab_cell_source(root, needed_extras(nb)))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    timeout = book_config(root).get("execute", {}).get("timeout", 600)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},  # run in the notebook's folder
    )
    client.execute()
    normalize(nb)
    nbformat.validate(nb)
    return nb


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebook", nargs="?", type=Path, help="one notebook (default: all in _toc.yml)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a notebook would change"
    )
    args = parser.parse_args(argv)

    paths = [args.notebook.resolve()] if args.notebook else toc_notebooks()
    if not paths:
        print("no notebooks listed in _toc.yml")
        return 0
    stale = []
    for path in paths:
        print(f"running {shown(path)} ...", flush=True)
        try:
            nb = regenerate(path)
        except CellExecutionError as exc:
            print(f"{shown(path)}: a cell failed, nothing written\n{exc}", file=sys.stderr)
            return 1
        if not same_checked_content(nb, nbformat.read(path, as_version=4)):
            stale.append(path)
            if not args.check:
                nbformat.write(nb, path)
    return report(stale, len(paths), "notebook(s)", args.check)


def report(stale: list[Path], total: int, noun: str, check: bool) -> int:
    """Name the files that changed (or would: ``check``); the exit status of the command."""
    verb = "would change" if check else "rewritten"
    for path in stale:
        print(f"{verb}: {shown(path)}")
    print(f"{total} {noun}, {len(stale)} {verb}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
