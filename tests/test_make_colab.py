"""tools/make_colab.py on small synthetic books: one test per MyST construct it rewrites."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
import sys
import textwrap

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (test extra)")
pytest.importorskip("sphinx_external_toc", reason="jupyter-book is not installed (book extra)")

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


make_colab = _load("make_colab")

CONFIG = """\
title: Test book
repository: {url: https://github.com/owner/repo, branch: main}
html: {baseurl: "https://owner.github.io/repo/"}
"""
TOC = """\
format: jb-book
root: book/intro
parts:
  - caption: Part
    numbered: true
    chapters:
      - file: book/01_first
      - file: book/02_second
"""
INSTALL = ('import sys\nif "google.colab" in sys.modules:\n'
           '    %pip install -q "bncourse[torch] @ git+https://github.com/owner/repo@main"')


def md(text):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text, **metadata):
    cell = nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"), metadata=metadata)
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="printed\n")]
    return cell


def figure_cell(name, caption):
    return code("plt.plot([1, 2])", mystnb={"figure": {"name": name, "caption": caption}})


@pytest.fixture
def book(tmp_path):
    """A two-chapter book; ``write(stem, cells)`` replaces a chapter, returns the root."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")

    def write(stem, cells):
        nb = nbformat.v4.new_notebook(cells=[code(INSTALL)] + cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, tmp_path / "book" / f"{stem}.ipynb")
        return tmp_path

    write("01_first", [md("# First\n\nIntro text."), figure_cell("fig-first", "A line.")])
    write("02_second", [md("# Second")])
    return write


def edition(root, stem):
    paths = make_colab.toc_notebooks(root)
    book = make_colab.collect(paths, root)
    return make_colab.convert(root / "book" / f"{stem}.ipynb", book, root)


def markdown_of(nb):
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_numbers_follow_the_book_and_references_become_text(book):
    root = book("02_second", [
        md("""
            # Second

            (sec-second-part)=
            ## A part

            $$
            a = b
            $$ (eq-second-a)

            $$
            c = d
            $$ (eq-second-c)
            """),
        figure_cell("fig-second", "Two points."),
        md("""
            By {eq}`eq-second-c`, and by equation {eq}`eq-second-a`; see {numref}`fig-second`
            and {numref}`fig-first`, {ref}`ex-second-one`, {ref}`sec-second-part`,
            {doc}`01_first`, {doc}`the first one <01_first>` and [the first](01_first.ipynb).

            ```{exercise}
            :label: ex-second-one

            Do it.
            ```
            """),
    ])
    nb = edition(root, "02_second")
    text = markdown_of(nb)
    assert text.startswith("# 2. Second")  # the chapter's number, as the book shows it
    assert "(sec-second-part)=" not in text and "## A part" in text
    assert "$$\na = b\n\\tag{2.1}\n$$" in text and "$$\nc = d\n\\tag{2.2}\n$$" in text
    assert "By Equation (2.2), and by equation (2.1); see Figure 2.1\nand Figure 1.1" in text
    assert "Exercise 2.1, *A part*," in text
    colab = "https://colab.research.google.com/github/owner/repo/blob/main/colab/01_first.ipynb"
    assert f"[1. First]({colab}), [the first one]({colab}) and [the first]({colab})" in text
    assert "**Exercise 2.1**\n\nDo it." in text
    assert not make_colab.MYST_ONLY.search(text)


def test_a_section_of_another_chapter_links_to_the_published_page(book):
    book("01_first", [md("# First\n\n(sec-first-x)=\n## X\n\nText.")])
    root = book("02_second", [md("# Second\n\nSee {ref}`sec-first-x`.")])
    text = markdown_of(edition(root, "02_second"))
    assert "See [X](https://owner.github.io/repo/book/01_first.html#sec-first-x)." in text


@pytest.mark.parametrize("fence", ["```", ":::"])
def test_admonitions_become_blockquotes_with_a_bold_title(book, fence):
    root = book("02_second", [md(f"""
        # Second

        {fence}{{admonition}} Common claims, checked
        :class: tip

        - *"A claim."* Checked by {{eq}}`eq-x`.
        {fence}

        $$
        x
        $$ (eq-x)

        {fence}{{note}}
        Careful.
        {fence}
        """)])
    text = markdown_of(edition(root, "02_second"))
    assert "> **Common claims, checked**\n>\n> - *\"A claim.\"* Checked by Equation (2.1)." in text
    assert "> **Note**\n>\n> Careful." in text
    assert ":class:" not in text


def test_a_gated_solution_becomes_collapsed_form_cells_without_outputs(book):
    root = book("02_second", [
        md("# Second"),
        md("```{exercise}\n:label: ex-two\n\nCompute it.\n```"),
        md("```{solution-start} ex-two\n:class: dropdown\n```\n\nIt is $x^2$, by {eq}`eq-y`."),
        code("answer = 2\nprint(answer)"),
        md("```{solution-end}\n```"),
        md("$$\ny\n$$ (eq-y)\n\nAfter the solution."),
    ])
    nb = edition(root, "02_second")
    forms = [c for c in nb.cells if c.metadata.get("cellView") == "form"]
    assert [f.source.splitlines()[0] for f in forms] == [
        "#@title Install the course package (in Colab; nothing elsewhere)",
        "#@title Solution to Exercise 2.1",
        "#@title Solution to Exercise 2.1: code",
    ]
    notes, solution = forms[1], forms[2]
    assert notes.source.splitlines()[1] == "# It is $x^2$, by Equation (2.1)."
    assert solution.source.endswith("answer = 2\nprint(answer)")
    assert solution.outputs == [] and solution.execution_count is None  # shows nothing
    text = markdown_of(nb)
    assert "It is" not in text and "After the solution." in text


def test_a_solution_directive_in_one_cell_is_a_form_cell(book):
    root = book("02_second", [
        md("# Second\n\n```{exercise}\n:label: ex-three\n\nWhy?\n```\n\n"
           "```{solution} ex-three\nBecause.\n```"),
    ])
    forms = [c for c in edition(root, "02_second").cells if c.metadata.get("cellView")]
    assert forms[-1].source == "#@title Solution to Exercise 2.1\n# Because."


def test_literalinclude_of_a_package_object_is_a_cell_showing_its_source(book):
    from bncourse.course import show_source
    import bncourse.stats

    root = book("02_second", [md("""
        # Second

        The merge:

        ```{literalinclude} ../bncourse/stats.py
        :language: python
        :pyobject: welford
        ```

        and after it.
        """)])
    cells = edition(root, "02_second").cells
    kinds = [c.cell_type for c in cells]
    k = next(i for i, c in enumerate(cells) if "welford" in c.source and c.cell_type == "code")
    assert kinds[k - 1] == kinds[k + 1] == "markdown"  # the prose around it stays prose
    assert "The merge:" in cells[k - 1].source and "and after it." in cells[k + 1].source
    cell = cells[k]
    assert make_colab.SOURCE_CALL.format(obj="bncourse.stats.welford") in cell.source
    assert "import bncourse.stats" in cell.source
    shown = show_source(bncourse.stats.welford)  # what the cell displays
    assert cell.outputs[0]["data"] == {"text/plain": repr(shown), "text/html": shown._repr_html_()}


def test_a_show_source_cell_stays_a_plain_code_cell(book):
    root = book("02_second", [md("# Second"),
                              code("show_source(bncourse.stats.welford)", tags=["remove-input"])])
    cell = edition(root, "02_second").cells[-1]
    assert cell.source == "show_source(bncourse.stats.welford)" and cell.metadata == {}
    assert cell.outputs  # the source it shows


def test_literalinclude_of_a_region_is_a_fenced_block(book, tmp_path):
    (tmp_path / "notes.txt").write_text("head\nStart here.\n  kept line\nStop.\ntail\n")
    root = book("02_second", [md("""
        # Second

        ```{literalinclude} ../notes.txt
        :language: text
        :start-at: Start here.
        :end-before: Stop.
        ```
        """)])
    text = markdown_of(edition(root, "02_second"))
    assert "```text\nStart here.\n  kept line\n```" in text


def test_a_figure_gets_its_caption_and_collapsed_code(book):
    root = book("01_first", [
        md("# First"),
        code("plt.plot([1])", tags=["hide-input"],
             mystnb={"figure": {"name": "fig-a", "caption": "The caption."}}),
        md("Next."),
    ])
    cells = edition(root, "01_first").cells
    k = next(i for i, c in enumerate(cells) if "plt.plot" in c.source)
    assert cells[k].source.startswith("#@title Code of Figure 1.1\n")
    assert cells[k].metadata == {"cellView": "form"}  # no MyST metadata left
    assert cells[k].outputs and cells[k].execution_count == 1  # the figure is kept
    assert cells[k + 1].source == "**Figure 1.1.** The caption."
    assert cells[k + 2].source == "Next."


def test_the_install_cell_stays_first_and_collapsed(book):
    root = book("02_second", [md("# Second")])
    first = edition(root, "02_second").cells[0]
    assert first.metadata["cellView"] == "form"
    assert first.source.endswith(INSTALL)


@pytest.mark.parametrize("text, words", [
    ("```{figure} x.png\n```", "directive {figure}"),
    ("{cite}`paper`", "role {cite}"),
    ("{eq}`eq-nowhere`", "no such label"),
    ("{doc}`99_missing`", "no such chapter"),
    ("[x](../README.md)", "not a chapter"),
    ("```{exercise}\nunclosed", "unclosed fence"),
    ("```{literalinclude} ../_toc.yml\n:start-at: no such line\n```", "not found"),
])
def test_what_it_cannot_express_is_an_error(book, text, words):
    root = book("02_second", [md("# Second\n\n" + text)])
    with pytest.raises(make_colab.ConversionError, match=words):
        edition(root, "02_second")


def test_check_mode_fails_when_the_edition_is_stale(book, capsys):
    root = book("02_second", [md("# Second")])
    assert make_colab.main(["--check"], root) == 1  # nothing generated yet
    assert not (root / "colab").exists()
    assert make_colab.main([], root) == 0
    assert sorted(p.name for p in (root / "colab").iterdir()) == ["01_first.ipynb",
                                                                 "02_second.ipynb"]
    assert make_colab.main(["--check"], root) == 0
    book("02_second", [md("# Second, changed")])
    assert make_colab.main(["--check"], root) == 1
    make_colab.main([], root)
    (root / "colab" / "03_gone.ipynb").write_text("{}")  # a chapter no longer in the TOC
    assert make_colab.main(["--check"], root) == 1
    make_colab.main([], root)
    assert not (root / "colab" / "03_gone.ipynb").exists()
    nb = json.loads((root / "colab" / "02_second.ipynb").read_text())
    assert nb["metadata"]["colab"]["name"] == "02_second.ipynb"
