"""Generate the Colab edition of the book: ``colab/NN_topic.ipynb`` from ``book/NN_topic.ipynb``.

    python tools/make_colab.py            # (re)write colab/ from the chapters of _toc.yml
    python tools/make_colab.py --check    # write nothing; exit 1 if colab/ is stale

Colab and plain Jupyter render Markdown and ``$...$``/``$$...$$`` math only; MyST's
directives, roles and targets would show as raw text there. The book's sources keep them
(the built book numbers equations, resolves cross-references and hides solutions), and
this tool writes an edition in the common subset, with the book's numbers:

- ``$$ ... $$ (label)`` becomes ``$$ ... \\tag{5.2} $$``; ``(label)=`` targets are removed;
- ``{eq}`` → "Equation (5.2)" ("(5.2)" right after the word "equation"), ``{numref}`` →
  "Figure 5.1" / "Exercise 5.1", ``{ref}`` → the exercise's number or the section's title
  (a link to the published book page when it lies in another chapter), ``{doc}`` and
  links to another chapter's ``.ipynb`` → a link to that chapter's Colab notebook;
- admonitions → a blockquote with a bold title; ``{exercise}`` → "**Exercise 5.1**" and its
  text;
- a gated solution (``{solution-start}`` ... ``{solution-end}``) → collapsed Colab form
  cells (``#@title Solution to Exercise 5.1``, metadata ``cellView: "form"``): its prose
  as comments, its code cells as they are, their outputs cleared;
- ``{literalinclude}`` of a package object (``:pyobject:``) → a code cell that shows the
  object's source with the package's helper (its stored output is that source); of a
  region (``:start-at:``/``:end-before:``) → a fenced code block of that region;
- a figure's caption (cell metadata ``mystnb.figure``) → a Markdown cell after the figure;
  code cells the book collapses (``hide-input``, ``remove-*``: the install cell) → form cells.

Numbers follow the book: chapter = position in ``_toc.yml``; figures, labelled equations
and exercises counted in order within the chapter. Anything MyST-only that this tool does
not know is an error, so a new construct cannot slip into the edition as raw text.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
import importlib
from pathlib import Path
import re
import sys
import textwrap

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import book_config, normalize, report, toc_notebooks  # noqa: E402

OUT_DIR = "colab"
COLAB = "https://colab.research.google.com/github"

# The cell that shows a package object's source (``{literalinclude} :pyobject:``), with
# the package's own helper (bncourse.course.show_source), as the chapters do.
SOURCE_IMPORT = "from bncourse.course import show_source"
SOURCE_CALL = "show_source({obj})"
SHOW_SOURCE_CELL = re.compile(r"^show_source\([\w.]+\)$")

ADMONITIONS = {"admonition", "note", "tip", "hint", "important", "warning", "caution",
               "attention", "danger", "error", "seealso"}
FENCE_RE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}\s*(?P<arg>.*?)\s*$")
CODE_FENCE_RE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?!\{)")
OPTION_RE = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*?)\s*$")
TARGET_RE = re.compile(r"^\((?P<label>[\w:.-]+)\)=\s*$")
EQUATION_RE = re.compile(r"^\$\$\s*\n(?P<body>.*?)\n\$\$[ \t]*\((?P<label>[\w:.-]+)\)[ \t]*$",
                         re.S | re.M)
ROLE_RE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]+)`")
LINK_RE = re.compile(r"\]\((?P<target>[^)\s]+)\)")
HEADING_RE = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*$", re.M)
# What must never reach the edition (tests/test_colab_edition.py scans for it too).
MYST_ONLY = re.compile(r"\{[\w:-]+\}`|^(`{3,}|:{3,})\{|^\([\w:.-]+\)=\s*$|^:::", re.M)


class ConversionError(ValueError):
    """A construct that the Colab edition cannot express (or a dangling reference)."""


@dataclass(frozen=True)
class Target:
    kind: str  # "figure", "equation", "exercise", "section"
    number: str  # "5.2" ("" for sections)
    title: str  # section title, exercise title, "" otherwise
    doc: str  # the chapter's stem, "05_backprop"


@dataclass
class Book:
    """What cross-references need: numbers, titles and URLs of every chapter."""

    chapters: dict[str, int]  # stem -> chapter number
    titles: dict[str, str]  # stem -> title (first heading)
    targets: dict[str, Target]
    repo_url: str
    branch: str
    site_url: str
    title: str

    def colab_url(self, stem: str) -> str:
        owner_repo = self.repo_url.rstrip("/").split("github.com/", 1)[1]
        return f"{COLAB}/{owner_repo}/blob/{self.branch}/{OUT_DIR}/{stem}.ipynb"

    def page_url(self, stem: str, anchor: str = "") -> str:
        return f"{self.site_url.rstrip('/')}/book/{stem}.html" + (f"#{anchor}" if anchor else "")


# --------------------------------------------------------------------------- parsing


def split_blocks(text: str) -> list[tuple]:
    """Split Markdown into ``("text", str)``, ``("code", str)`` (a plain fenced block, kept
    verbatim) and ``("directive", name, arg, options, body)`` blocks."""
    lines = text.split("\n")
    blocks, buffer, i = [], [], 0

    def flush():
        if buffer:
            blocks.append(("text", "\n".join(buffer)))
            buffer.clear()

    while i < len(lines):
        line = lines[i]
        directive = FENCE_RE.match(line)
        plain = CODE_FENCE_RE.match(line)
        if directive or plain:
            fence = (directive or plain).group("fence")
            close = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}\s*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            if j == len(lines):
                raise ConversionError(f"unclosed fence {line!r}")
            flush()
            inner = lines[i + 1:j]
            if plain:
                blocks.append(("code", "\n".join(lines[i:j + 1])))
            else:
                options = {}
                while inner and OPTION_RE.match(inner[0]):
                    match = OPTION_RE.match(inner.pop(0))
                    options[match.group("key")] = match.group("value")
                body = "\n".join(inner).strip("\n")
                blocks.append(("directive", directive.group("name"), directive.group("arg"),
                               options, body))
            i = j + 1
            continue
        buffer.append(line)
        i += 1
    flush()
    return blocks


def directives(text: str):
    """Every directive of ``text``, nested ones included, as (name, arg, options, body)."""
    for block in split_blocks(text):
        if block[0] == "directive":
            yield block[1:]
            yield from directives(block[4])


def source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def collect(paths: list[Path], root: Path = ROOT) -> Book:
    """Number every figure, labelled equation and exercise; find every section target."""
    config = book_config(root)
    chapters, titles, targets = {}, {}, {}
    for number, path in enumerate(paths, start=1):
        stem = path.stem
        chapters[stem] = number
        nb = nbformat.read(path, as_version=4)
        counts = {"figure": 0, "equation": 0, "exercise": 0}

        def add(label, kind, title=""):
            if label in targets:
                raise ConversionError(f"label {label!r} defined twice")
            number_ = ""
            if kind in counts:
                counts[kind] += 1
                number_ = f"{number}.{counts[kind]}"
            targets[label] = Target(kind, number_, title, stem)

        for cell in nb.cells:
            text = source(cell)
            if cell.cell_type == "code":
                name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
                if name:
                    add(name, "figure")
                continue
            if cell.cell_type != "markdown":
                continue
            if stem not in titles:
                heading = HEADING_RE.search(text)
                if heading and len(heading.group("hashes")) == 1:
                    titles[stem] = heading.group("title")
            for match in EQUATION_RE.finditer(text):
                add(match.group("label"), "equation")
            for name, arg, options, _ in directives(text):
                if name == "exercise" and "label" in options:
                    add(options["label"], "exercise", arg)
            lines = text.split("\n")
            for k, line in enumerate(lines):
                target = TARGET_RE.match(line)
                if target:
                    following = next((m for m in map(HEADING_RE.match, lines[k + 1:]) if m), None)
                    if following is None:
                        raise ConversionError(f"target ({target.group('label')})= has no heading")
                    add(target.group("label"), "section", following.group("title"))
        titles.setdefault(stem, stem)
    repo = config["repository"]
    site = config.get("html", {}).get("baseurl") or ""
    return Book(chapters, titles, targets, repo["url"], repo.get("branch", "main"), site,
                config.get("title", ""))


# --------------------------------------------------------------------------- inline text


def explicit(text: str) -> tuple[str | None, str]:
    """``"title <target>"`` → (title, target); ``"target"`` → (None, target)."""
    match = re.fullmatch(r"(?s)(?P<title>.*?)\s*<(?P<target>[^<>]+)>", text.strip())
    return (match.group("title"), match.group("target")) if match else (None, text.strip())


def resolve_role(role: str, text: str, before: str, book: Book, stem: str) -> str:
    title, target = explicit(text)
    if role == "doc":
        doc = Path(target).stem
        if doc not in book.chapters:
            raise ConversionError(f"{{doc}}`{text}`: no such chapter")
        shown = title or f"{book.chapters[doc]}. {book.titles[doc]}"
        return f"[{shown}]({book.colab_url(doc)})"
    if role not in ("eq", "numref", "ref"):
        raise ConversionError(f"role {{{role}}} is not supported by the Colab edition")
    found = book.targets.get(target)
    if found is None:
        raise ConversionError(f"{{{role}}}`{text}`: no such label")
    if found.kind == "equation":
        if title:
            return title.replace("{number}", found.number).replace("%s", found.number)
        after_word = re.search(r"(?i)\bequations?\s*$", before)
        return f"({found.number})" if after_word else f"Equation ({found.number})"
    if found.kind == "section":
        shown = title or found.title
        if found.doc == stem:
            return f"*{shown}*"
        return f"[{shown}]({book.page_url(found.doc, target)})"
    name = {"figure": "Figure", "exercise": "Exercise"}[found.kind]
    if title:  # "{numref}`Panel {number} <fig-x>`" or "{ref}`text <label>`"
        return title.replace("{number}", found.number).replace("%s", found.number)
    return f"{name} {found.number}"


def convert_text(text: str, book: Book, stem: str) -> str:
    """Roles, targets, labelled equations and links of plain Markdown text."""
    lines = [line for line in text.split("\n") if not TARGET_RE.match(line)]
    text = "\n".join(lines)

    def tag(match):
        label = match.group("label")
        found = book.targets.get(label)
        if found is None or found.kind != "equation":
            raise ConversionError(f"equation label {label!r} not collected")
        return f"$$\n{match.group('body')}\n\\tag{{{found.number}}}\n$$"

    text = EQUATION_RE.sub(tag, text)
    out, last = [], 0
    for match in ROLE_RE.finditer(text):
        before = text[last:match.start()]
        out.append(before)
        context = "".join(out)[-40:]
        out.append(resolve_role(match.group("role"), match.group("text"), context, book, stem))
        last = match.end()
    out.append(text[last:])
    text = "".join(out)

    def link(match):
        target = match.group("target")
        if re.match(r"^[a-z][\w+.-]*:", target):  # http:, https:, mailto:
            return match.group(0)
        path, _, anchor = target.partition("#")
        if not path:  # "#label" in this chapter: the edition has no anchors
            found = book.targets.get(anchor)
            if found is None:
                raise ConversionError(f"link to #{anchor}: no such label")
            return f"]({book.page_url(found.doc, anchor)})"
        doc = Path(path).stem
        if doc in book.chapters and Path(path).suffix in (".ipynb", ".md", ""):
            return f"]({book.colab_url(doc)})"
        if doc == "intro":
            return f"]({book.site_url})"
        raise ConversionError(f"link to {target!r}: not a chapter of the book")

    return LINK_RE.sub(link, text)


def quote(text: str) -> str:
    return "\n".join(("> " + line).rstrip() for line in text.split("\n"))


# --------------------------------------------------------------------------- cells


def module_of(path: str) -> str:
    """``../bncourse/torch/folding.py`` → ``bncourse.torch.folding``."""
    parts = Path(path).with_suffix("").parts
    if "bncourse" not in parts:
        raise ConversionError(f"literalinclude of {path!r}: not a package module")
    parts = parts[parts.index("bncourse"):]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_cell(path: str, pyobject: str):
    """A code cell showing ``pyobject`` of the module at ``path``, with its source stored
    as the output (what running it prints)."""
    module = module_of(path)
    obj = importlib.import_module(module)
    for attr in pyobject.split("."):
        obj = getattr(obj, attr)
    from bncourse.course import show_source

    code = f"{SOURCE_IMPORT}\nimport {module}\n\n{SOURCE_CALL.format(obj=f'{module}.{pyobject}')}"
    shown = show_source(obj)  # what running the cell displays
    output = nbformat.v4.new_output("execute_result", execution_count=None, data={
        "text/plain": repr(shown), "text/html": shown._repr_html_()})
    return nbformat.v4.new_code_cell(code, outputs=[output])


def region(path: str, options: dict, root: Path) -> str:
    """The lines of a file that ``:start-at:``/``:end-before:`` (etc.) select, like Sphinx."""
    lines = (root / "book" / path).resolve().read_text(encoding="utf-8").splitlines()

    def find(key: str, first: int) -> int:
        found = next((k for k in range(first, len(lines)) if key in lines[k]), None)
        if found is None:
            raise ConversionError(f"literalinclude {path}: {key!r} not found")
        return found

    start, end = 0, len(lines)
    if "start-at" in options or "start-after" in options:
        start = find(options.get("start-at") or options["start-after"], 0)
        start += 0 if "start-at" in options else 1
    if "end-before" in options or "end-at" in options:
        end = find(options.get("end-before") or options["end-at"], start)
        end += 1 if "end-at" in options else 0
    return textwrap.dedent("\n".join(lines[start:end])).strip("\n")


def form_cell(title: str, code: str = "", **fields):
    cell = nbformat.v4.new_code_cell(f"#@title {title}" + (f"\n{code}" if code else ""), **fields)
    cell.metadata["cellView"] = "form"
    return cell


def as_comments(text: str) -> str:
    return "\n".join(("# " + line).rstrip() for line in text.strip("\n").split("\n"))


class Chapter:
    """Converts one notebook, cell by cell, into the Colab edition's cells."""

    def __init__(self, nb, stem: str, book: Book, root: Path):
        self.nb, self.stem, self.book, self.root = nb, stem, book, root
        self.cells: list = []
        self.markdown: list[str] = []  # Markdown waiting to become one cell
        self.solution: str | None = None  # the exercise's number while inside a solution
        self.solution_notes: list[str] = []

    # Markdown accumulates until a code cell (or the end) needs a cell boundary.
    def flush_markdown(self):
        text = "\n\n".join(part.strip("\n") for part in self.markdown if part.strip())
        if text.strip():
            self.cells.append(nbformat.v4.new_markdown_cell(text))
        self.markdown = []

    def flush_notes(self):
        if self.solution_notes:
            text = "\n\n".join(self.solution_notes)
            self.cells.append(form_cell(f"Solution to Exercise {self.solution}",
                                        as_comments(text)))
            self.solution_notes = []

    def emit_markdown(self, text: str):
        if self.solution is not None:
            if text.strip():
                self.solution_notes.append(text.strip("\n"))
        else:
            self.markdown.append(text)

    def emit_cell(self, cell):
        self.flush_markdown()
        self.flush_notes()
        self.cells.append(cell)

    def markdown_cell(self, text: str):
        for block in split_blocks(text):
            kind = block[0]
            if kind == "text":
                self.emit_markdown(convert_text(block[1], self.book, self.stem))
            elif kind == "code":
                self.emit_markdown(block[1])
            else:
                self.directive(*block[1:])

    def directive(self, name: str, arg: str, options: dict, body: str):
        book, stem = self.book, self.stem
        if name in ADMONITIONS:
            title = arg if name == "admonition" else (name.capitalize() + (f": {arg}" if arg else ""))
            inner = Chapter(self.nb, stem, book, self.root)
            inner.markdown_cell(body)
            if inner.cells or inner.solution_notes:
                raise ConversionError(f"{name}: code inside an admonition")
            content = "\n\n".join(part.strip("\n") for part in inner.markdown if part.strip())
            self.emit_markdown(quote(f"**{convert_text(title, book, stem)}**\n\n{content}"))
        elif name == "exercise":
            label = options.get("label")
            number = book.targets[label].number if label else ""
            title = f"**Exercise {number}**" + (f" ({convert_text(arg, book, stem)})" if arg else "")
            inner = Chapter(self.nb, stem, book, self.root)
            inner.markdown_cell(body)
            content = "\n\n".join(part.strip("\n") for part in inner.markdown if part.strip())
            self.emit_markdown(f"{title}\n\n{content}")
        elif name in ("solution-start", "solution"):
            found = book.targets.get(arg)
            if found is None or found.kind != "exercise":
                raise ConversionError(f"{name} {arg!r}: no such exercise")
            self.flush_markdown()
            self.solution = found.number
            if name == "solution":  # the whole solution inside the directive
                self.markdown_cell(body)
                self.flush_notes()
                self.solution = None
        elif name == "solution-end":
            if self.solution is None:
                raise ConversionError("solution-end without solution-start")
            if not any(c.metadata.get("cellView") == "form" and
                       source(c).startswith(f"#@title Solution to Exercise {self.solution}")
                       for c in self.cells) and not self.solution_notes:
                self.solution_notes.append("(see the code below)")
            self.flush_notes()
            self.solution = None
        elif name == "literalinclude":
            if "pyobject" in options:
                self.emit_cell(source_cell(arg, options["pyobject"]))
            else:
                language = options.get("language", "")
                block = f"```{language}\n{region(arg, options, self.root)}\n```"
                self.emit_markdown(block)
        else:
            raise ConversionError(f"directive {{{name}}} is not supported by the Colab edition")

    def code_cell(self, cell, index: int):
        out = nbformat.v4.new_code_cell(source(cell))
        out.execution_count = cell.get("execution_count")
        out.outputs = copy.deepcopy(cell.get("outputs", []))
        tags = set(cell.metadata.get("tags", []))
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        label = figure.get("name")
        number = self.book.targets[label].number if label else None
        if self.solution is not None:
            self.flush_notes()
            out = form_cell(f"Solution to Exercise {self.solution}: code", source(cell))
        elif index == 0 and "google.colab" in source(cell):
            out = form_cell("Install the course package (in Colab; nothing elsewhere)",
                            source(cell), execution_count=out.execution_count, outputs=out.outputs)
        elif SHOW_SOURCE_CELL.match(source(cell).strip()):
            pass  # one line that names what it shows: the book hides it, the edition need not
        elif tags & {"hide-input", "remove-input", "hide-cell", "remove-cell"}:
            title = f"Code of Figure {number}" if number else "Code (collapsed in the book)"
            out = form_cell(title, source(cell), execution_count=out.execution_count,
                            outputs=out.outputs)
        if "remove-output" in tags:
            out.outputs = []
        self.emit_cell(out)
        if figure.get("caption") and self.solution is None:
            caption = convert_text(figure["caption"], self.book, self.stem)
            self.markdown.append(f"**Figure {number}.** {caption}")
            self.flush_markdown()  # the caption is a cell of its own, under the figure

    def convert(self):
        for index, cell in enumerate(self.nb.cells):
            if cell.cell_type == "markdown":
                self.markdown_cell(source(cell))
                if self.solution is None:
                    self.flush_markdown()  # one Markdown cell per source cell
            elif cell.cell_type == "code":
                self.code_cell(cell, index)
            else:
                self.emit_cell(copy.deepcopy(cell))
        if self.solution is not None:
            raise ConversionError(f"solution of Exercise {self.solution} is never closed")
        self.flush_markdown()
        return self.cells


def edition_note(book: Book, stem: str) -> str:
    number = book.chapters[stem]
    return (f"*Chapter {number} of [{book.title}]({book.page_url(stem)}), "
            f"Colab edition: generated from the book's notebook by `tools/make_colab.py`. "
            "Equations, figures and exercises carry the book's numbers; each solution is "
            "a collapsed cell (click \"Show code\", or run it).*")


def convert(path: Path, book: Book, root: Path = ROOT):
    """The Colab edition of the notebook at ``path``."""
    nb = nbformat.read(path, as_version=4)
    stem = path.stem
    cells = Chapter(nb, stem, book, root).convert()
    number = book.chapters[stem]
    for cell in cells:  # number the title, then say under it what this file is
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            title, _, rest = cell.source.partition("\n")
            cell.source = f"# {number}. {title[2:]}\n\n{edition_note(book, stem)}" + (
                f"\n\n{rest.strip(chr(10))}" if rest.strip() else "")
            break
    edition = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(nb.metadata))
    edition.metadata["colab"] = {"name": f"{stem}.ipynb", "toc_visible": True}
    normalize(edition)
    leftover = MYST_ONLY.search("\n".join(c.source for c in cells if c.cell_type == "markdown"))
    if leftover:
        raise ConversionError(f"{stem}: MyST-only syntax left: {leftover.group(0)!r}")
    nbformat.validate(edition)
    return edition


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file of colab/ would change")
    args = parser.parse_args(argv)
    paths = toc_notebooks(root)
    book = collect(paths, root)
    out_dir = root / OUT_DIR
    stale = []
    wanted = set()
    for path in paths:
        target = out_dir / path.name
        wanted.add(target.name)
        text = render(convert(path, book, root))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not args.check:
                out_dir.mkdir(exist_ok=True)
                target.write_text(text, encoding="utf-8")
    for path in sorted(out_dir.glob("*.ipynb")) if out_dir.exists() else []:
        if path.name in wanted:
            continue
        stale.append(path)
        if not args.check:
            path.unlink()
    return report(stale, len(paths), "chapter(s)", args.check)


if __name__ == "__main__":
    sys.exit(main())
