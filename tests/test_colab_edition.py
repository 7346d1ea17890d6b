"""The committed Colab edition (colab/): current, free of MyST-only syntax, numbered like
the built book, and what the book's Colab and download buttons open."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("nbformat", reason="nbformat is not installed (test extra)")
pytest.importorskip("sphinx_external_toc", reason="jupyter-book is not installed (book extra)")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


make_colab = _load("make_colab")
CHAPTERS = make_colab.toc_notebooks(ROOT)
CONFIG = make_colab.book_config(ROOT)
REPO = CONFIG["repository"]["url"].rstrip("/").split("github.com/", 1)[1]

# Written independently of the tool's own pattern: what Colab would show as raw text.
RAW_MYST = {
    "role": re.compile(r"\{[\w:-]+\}`"),
    "directive": re.compile(r"^\s*(`{3,}|:{3,})\s*\{", re.M),
    "colon fence": re.compile(r"^\s*:::", re.M),
    "target": re.compile(r"^\s*\([\w:.-]+\)=\s*$", re.M),
    "equation label": re.compile(r"\$\$[ \t]*\([\w:.-]+\)"),
    "directive option": re.compile(r"^:(label|class|language|pyobject|name):", re.M),
    "link to a book file": re.compile(r"\]\((?!https?:)[^)]*\.(ipynb|md)\b"),
}


def edition(path: Path) -> dict:
    return json.loads((ROOT / "colab" / path.name).read_text(encoding="utf-8"))


def text(cell) -> str:
    return "".join(cell["source"])


def test_every_chapter_has_a_current_edition(capsys):
    assert sorted(p.name for p in (ROOT / "colab").glob("*.ipynb")) == sorted(
        p.name for p in CHAPTERS)
    rc = make_colab.main(["--check"])
    assert rc == 0, "colab/ is stale: run python tools/make_colab.py\n" + capsys.readouterr().out


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_the_edition_has_no_myst_only_syntax(path):
    nb = edition(path)
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for what, pattern in RAW_MYST.items():
            found = pattern.search(text(cell))
            assert not found, f"cell {k}: {what} {found.group(0)!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_are_collapsed_and_show_nothing(path):
    nb = edition(path)
    first = nb["cells"][0]
    assert first["metadata"].get("cellView") == "form" and "%pip install" in text(first)
    solutions = [c for c in nb["cells"] if text(c).startswith("#@title Solution")]
    exercises = re.findall(r"\*\*Exercise (\d+\.\d+)\*\*", "".join(
        text(c) for c in nb["cells"] if c["cell_type"] == "markdown"))
    assert exercises, "every chapter has exercises"
    for number in exercises:
        cells = [c for c in solutions if text(c).startswith(f"#@title Solution to Exercise {number}")]
        assert cells, f"Exercise {number} has no solution cell"
    for cell in solutions:
        assert cell["cell_type"] == "code" and cell["metadata"] == {"cellView": "form"}
        assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The built book (its own build: tests/test_book.py's is another module's fixture)."""
    pytest.importorskip("jupyter_book", reason="jupyter-book is not installed (the book extra)")
    out = tmp_path_factory.mktemp("colab-book")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    cmd += ["build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "_build" / "html"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_the_colab_and_download_buttons_open_the_edition(html, path):
    page = (html / "book" / f"{path.stem}.html").read_text(encoding="utf-8")
    branch = CONFIG["repository"]["branch"]
    colab = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page)
    assert colab == [f"https://colab.research.google.com/github/{REPO}/blob/{branch}/colab/"
                     f"{path.name}"]
    downloads = re.findall(r'href="([^"]+\.ipynb)"', page)
    assert f"../colab/{path.name}" in downloads and not any("_sources" in d for d in downloads)
    assert (html / "colab" / path.name).read_bytes() == (ROOT / "colab" / path.name).read_bytes()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_the_edition_numbers_like_the_built_book(html, path):
    page = (html / "book" / f"{path.stem}.html").read_text(encoding="utf-8")
    cells = edition(path)["cells"]
    markdown = "\n".join(text(c) for c in cells if c["cell_type"] == "markdown")
    equations = re.findall(r'<span class="eqno">\(([\d.]+)\)', page)
    assert re.findall(r"\\tag\{([\d.]+)\}", markdown) == equations
    figures = re.findall(r'<span class="caption-number">Fig\. ([\d.]+) </span>', page)
    assert re.findall(r"^\*\*Figure ([\d.]+)\.\*\*", markdown, re.M) == figures
    exercises = re.findall(r'<span class="caption-number">Exercise ([\d.]+) </span>', page)
    assert re.findall(r"^\*\*Exercise ([\d.]+)\*\*", markdown, re.M) == exercises
    number = re.search(r'class="current reference internal" href="#">(\d+)\. ', page)  # the TOC
    title = re.search(r"^# (\d+)\. ", markdown, re.M)
    assert number and title and number.group(1) == title.group(1)
