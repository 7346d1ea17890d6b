"""The book builds without a warning, and its pages work offline in a real browser.

One build (module fixture) serves every test: ``jupyter-book build -W -n --keep-going``
into a temporary folder, so the checkout's ``_build`` is never touched. The browser check
serves the HTML on 127.0.0.1 and opens every page of ``_toc.yml`` in headless Chromium,
recording every request the pages make, and measures the layout at a desktop width (1280 px)
and a phone width (400 px); the search page is checked for readable snippets.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [  # offline and quiet: no background requests of the browser's own
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = {"data", "blob", "about"}  # never leave the machine
DESKTOP, PHONE = 1280, 400  # viewport widths (CSS px) of the layout checks


def toc_docnames() -> list[str]:
    """Every page of ``_toc.yml`` (root first), as Sphinx docnames."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    return list(parse_toc_yaml(ROOT / "_toc.yml"))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build the book once: (the finished process, the HTML folder)."""
    pytest.importorskip("jupyter_book", reason="jupyter-book is not installed (the book extra)")
    out = tmp_path_factory.mktemp("book")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    cmd += ["build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    return proc, out / "_build" / "html"


@pytest.fixture(scope="module")
def html(build) -> Path:
    proc, html_dir = build
    if proc.returncode != 0:  # the log is in test_build_succeeds_without_warnings
        pytest.fail(f"the book build failed (rc={proc.returncode})", pytrace=False)
    return html_dir


def test_build_succeeds_without_warnings(build):
    proc, html_dir = build
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # no colour codes
    warnings = [line for line in log.splitlines() if re.search(r"WARNING|ERROR", line)]
    assert not warnings, "\n".join(warnings)
    assert proc.returncode == 0, log[-6000:]
    assert "build succeeded" in log
    for docname in toc_docnames():
        assert (html_dir / f"{docname}.html").is_file(), f"{docname} listed in _toc.yml, not built"


def test_toc_parts_are_numbered_and_captioned():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc.get("parts", []):
        assert part.get("caption") and part.get("numbered") is True, part


def test_no_file_outside_the_toc_is_built(html):
    pages = (html / "book").rglob("*.html")
    built = {p.relative_to(html).with_suffix("").as_posix() for p in pages}
    assert built == {d for d in toc_docnames() if d.startswith("book/")}


def test_mathjax_is_served_locally(html):
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]*\ssrc="([^"]*mathjax[^"]*)"', text)
        assert all(not re.match(r"(https?:)?//", src) for src in scripts), (page, scripts)


def test_no_asset_is_linked_from_the_network(html):
    """No page or stylesheet loads a script, stylesheet, font or image from another host.

    Plain links (<a href>: launch and repository buttons) are not loads and are allowed, and
    so is ``<link rel="canonical">``: the published page's own address (``html.baseurl``),
    which a browser never fetches.
    """
    remote = r"""(?:https?:)?//"""
    patterns = [
        rf"""<(?:script|img|iframe|source|audio|video)\b[^>]*\ssrc=["']{remote}""",
        rf"""<link\b(?![^>]*\srel=["']canonical["'])[^>]*\shref=["']{remote}""",
        rf"""url\(\s*["']?{remote}""",
        rf"""@import\s+["']{remote}""",
    ]
    offenders = []
    for path in [*html.rglob("*.html"), *html.rglob("*.css")]:
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in patterns:
            found = re.finditer(pattern, text)
            offenders += [f"{path.relative_to(html)}: {m[0][:120]}" for m in found]
    assert not offenders, "\n".join(offenders)


# --- the browser check -------------------------------------------------------------------


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def served(html):
    """The built HTML on http://127.0.0.1:<port>/, from a thread."""
    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def browser_context():
    """A headless Chromium with a fresh profile, through Playwright."""
    executable = chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the test extra)"
    )
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as pw:
        # Playwright passes the profile as --user-data-dir; it never downloads a browser here.
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield context
        context.close()


@pytest.fixture(scope="module")
def visits(served, browser_context):
    """Open every TOC page once; what each page did, keyed by docname."""
    base = urlsplit(served)
    requests: list[str] = []

    def leaves_localhost(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in LOCAL_SCHEMES and parts.netloc != base.netloc

    def refuse_remote(route):
        # Recorded by the "request" handler; refused, so the check never touches the network.
        if leaves_localhost(route.request.url):
            route.abort()
        else:
            route.continue_()

    browser_context.on("request", lambda request: requests.append(request.url))
    browser_context.route("**/*", refuse_remote)
    results = {}
    for docname in toc_docnames():
        page = browser_context.new_page()
        errors, bad_responses = [], []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.on("response", lambda r, bad=bad_responses: r.status < 400 or bad.append(r.url))
        first = len(requests)
        page.set_viewport_size({"width": DESKTOP, "height": 900})
        response = page.goto(f"{served}/{docname}.html", wait_until="load")
        results[docname] = {
            "status": response.status if response else None,
            "math": page.evaluate(MATH_JS),
            "images": page.evaluate(IMAGES_JS),
            "solutions": page.evaluate(SOLUTIONS_JS),
            "layout": page.evaluate(LAYOUT_JS),  # solutions open: their code is measured too
        }
        page.wait_for_load_state("networkidle")  # late loads too (fonts), before counting
        results[docname] |= {
            "errors": errors,
            "bad_responses": bad_responses,
            "requests": requests[first:],
            "remote_requests": [url for url in requests[first:] if leaves_localhost(url)],
        }
        page.close()
    return results


@pytest.fixture(scope="module")
def phone_layouts(served, browser_context):
    """The layout of every TOC page opened at the phone width, keyed by docname."""
    results = {}
    for docname in toc_docnames():
        page = browser_context.new_page()
        page.set_viewport_size({"width": PHONE, "height": 800})
        page.goto(f"{served}/{docname}.html", wait_until="load")
        page.evaluate(MATH_JS)  # typeset first: MathJax changes the widths
        page.evaluate(SOLUTIONS_JS)
        results[docname] = page.evaluate(LAYOUT_JS)
        page.close()
    return results


# Waits for MathJax to finish, then counts math elements, typeset ones and TeX errors.
MATH_JS = """async () => {
    const math = [...document.querySelectorAll('.math')];
    if (math.length && window.MathJax && MathJax.startup) await MathJax.startup.promise;
    return {
        elements: math.length,
        typeset: math.filter(el => el.querySelector('mjx-container')).length,
        containers: document.querySelectorAll('mjx-container').length,
        errors: document.querySelectorAll('mjx-merror').length,
        mathjax: !!(window.MathJax && MathJax.version),
    };
}"""
# Loads every image (lazy ones too), then reports those that did not decode.
IMAGES_JS = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = 'eager'; });
    await Promise.all(images.map(img => img.decode().catch(() => null)));
    return images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}"""
# For each solution dropdown: is its body hidden on load, and shown after one click?
SOLUTIONS_JS = """async () => {
    const visible = el =>
        !!el && el.checkVisibility({opacityProperty: true, visibilityProperty: true});
    const out = [];
    for (const sol of document.querySelectorAll('.solution')) {
        const body = sol.querySelector('section, .cell');
        const button = sol.querySelector('button.toggle-button, summary');
        const hidden = !visible(body);
        if (button) button.click();
        await new Promise(r => setTimeout(r, 500));  // the toggle animates for 0.3 s
        const dropdown = sol.classList.contains('dropdown');
        out.push({id: sol.id, dropdown, hidden, shown: visible(body)});
    }
    return out;
}"""

# The layout at the current viewport width (after MathJax, with every <details> opened):
# page width; code blocks that scroll sideways; display math and tables that are wider than
# the text column without a box of their own that scrolls (overflow-x auto/scroll) and lies
# inside the column; cells (the "Show code cell source" boxes) that come before the title.
LAYOUT_JS = """async () => {
    if (document.querySelector('.math') && window.MathJax && MathJax.startup)
        await MathJax.startup.promise;
    document.querySelectorAll('article details').forEach(d => { d.open = true; });
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const root = document.documentElement;
    const article = document.querySelector('article.bd-article');
    const cs = getComputedStyle(article), box = article.getBoundingClientRect();
    const col = {left: box.left + parseFloat(cs.paddingLeft),
                 right: box.right - parseFloat(cs.paddingRight)};
    const inColumn = el => {
        const r = el.getBoundingClientRect();
        return r.left >= col.left - 1 && r.right <= col.right + 1;
    };
    const scrollBox = el => {
        for (let e = el; e && e !== article; e = e.parentElement)
            if (['auto', 'scroll'].includes(getComputedStyle(e).overflowX)) return e;
        return null;
    };
    const longest = el => el.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '');
    const kind = el => el.closest('.cell_input') ? 'input'
        : el.closest('.cell_output, .output') ? 'output' : 'literal';
    const shown = el => el.clientWidth > 0;
    const preScroll = [...article.querySelectorAll('pre')].filter(shown)
        .filter(p => p.scrollWidth > p.clientWidth + 1)
        .map(p => ({kind: kind(p), over_px: p.scrollWidth - p.clientWidth,
                    line: longest(p).slice(0, 100)}));
    const unboxed = selector => [...article.querySelectorAll(selector)].filter(shown)
        .filter(el => !(inColumn(el) && el.scrollWidth <= el.clientWidth + 1))
        .filter(el => { const b = scrollBox(el); return !b || !inColumn(b); })
        .map(el => ({tag: el.tagName, right: Math.round(el.getBoundingClientRect().right),
                     column_right: Math.round(col.right), text: el.textContent.slice(0, 60)}));
    const h1 = article.querySelector('h1');
    const cellsAboveTitle = h1 ? [...article.querySelectorAll('.cell')]
        .filter(c => c.compareDocumentPosition(h1) & Node.DOCUMENT_POSITION_FOLLOWING)
        .map(c => c.textContent.trim().slice(0, 60)) : null;
    return {viewport: root.clientWidth, page_width: root.scrollWidth, pre_scroll: preScroll,
            math: unboxed('div.math, mjx-container[display="true"]'), tables: unboxed('table'),
            cells_above_title: cellsAboveTitle};
}"""


def test_every_toc_page_loads_without_errors(visits):
    for docname, visit in visits.items():
        assert visit["status"] == 200, docname
        assert not visit["errors"], (docname, visit["errors"])
        assert not visit["bad_responses"], (docname, visit["bad_responses"])


def test_no_request_leaves_localhost(visits):
    total = sum(len(v["requests"]) for v in visits.values())
    assert total > 0, "no request recorded at all"
    remote = {d: v["remote_requests"] for d, v in visits.items() if v["remote_requests"]}
    assert not remote, remote
    print(f"{len(visits)} pages, {total} requests, none leaving localhost")  # shown by -rP


def test_math_is_typeset_by_the_local_mathjax(visits):
    pages_with_math = 0
    for docname, visit in visits.items():
        math = visit["math"]
        if math["elements"] == 0:
            continue
        pages_with_math += 1
        assert math["mathjax"], f"{docname}: MathJax did not load"
        assert math["typeset"] == math["elements"], (docname, math)
        assert math["errors"] == 0, (docname, math)
    assert pages_with_math > 0, "no page has math: the MathJax check checked nothing"


def test_every_image_loads(visits):
    for docname, visit in visits.items():
        broken = [img["src"] for img in visit["images"] if img["width"] == 0]
        assert not broken, (docname, broken)


def test_solutions_are_hidden_until_opened(visits):
    for docname, visit in visits.items():
        for solution in visit["solutions"]:
            assert solution["dropdown"], (docname, solution)
            assert solution["hidden"] and solution["shown"], (docname, solution)


# --- the layout at a desktop and a phone width ---------------------------------------------


def layouts(visits, phone_layouts):
    """[(width, docname, layout)] for both widths."""
    return [(DESKTOP, d, v["layout"]) for d, v in visits.items()] + [
        (PHONE, d, layout) for d, layout in phone_layouts.items()
    ]


def test_no_page_scrolls_sideways(visits, phone_layouts):
    for width, docname, layout in layouts(visits, phone_layouts):
        print(f"{width} px {docname}: page {layout['page_width']} px")  # shown by -rP
    wide = [
        (width, docname, layout["page_width"])
        for width, docname, layout in layouts(visits, phone_layouts)
        if layout["page_width"] > layout["viewport"]
    ]
    assert not wide, wide


def solution_cells(nb) -> set[int]:
    """Indices of the code cells between ``solution-start`` and ``solution-end``."""
    inside, cells = False, set()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            inside = ("solution-start" in cell.source or inside) and (
                "solution-end" not in cell.source
            )
        elif inside:
            cells.add(i)
    return cells


def shows_package_source(output) -> bool:
    """Whether ``output`` is package source displayed by ``show_source`` (Pygments HTML, a
    ``div.highlight``): it keeps the package's line length and wraps at the edge of its box
    (book/_static/layout.css), like literalinclude; the browser check measures it."""
    html = "".join(output.get("data", {}).get("text/html", ""))
    return html.startswith('<div class="highlight"')


def test_notebook_lines_fit_the_column():
    """Code and printed lines of at most 88 characters, 82 in a solution (its dropdown is
    narrower): what the text column holds at 1280 px (book/_static/layout.css). Package
    source shown with show_source wraps instead, and is left out. The browser check below
    measures the pages; this names the lines, without a build."""
    import nbformat

    sys.path.insert(0, str(ROOT / "tools"))
    from run_notebooks import toc_notebooks

    long = []
    for path in toc_notebooks(ROOT):
        nb = nbformat.read(path, as_version=4)
        solutions = solution_cells(nb)
        for i, cell in enumerate(nb.cells[1:], 1):  # the Colab cell is not shown
            if cell.cell_type != "code":
                continue
            limit = 82 if i in solutions else 88
            outputs = "".join(
                "".join(out.get("text") or out.get("data", {}).get("text/plain", ""))
                for out in cell.get("outputs", [])
                if not shows_package_source(out)
            )
            for kind, text in (("code", cell.source), ("output", outputs)):
                long += [
                    f"{path.name} cell {i} {kind} ({len(line)} > {limit}): {line}"
                    for line in text.splitlines()
                    if len(line) > limit
                ]
    assert not long, "\n".join(long)


def test_no_code_block_scrolls_at_desktop_width(visits):
    """Code inputs, printed outputs and included source fit the column at 1280 px: lines of
    at most 88 characters (book/_static/layout.css sizes the code font for them); package
    source shown with literalinclude or show_source wraps at the box edge instead."""
    scrolling = {d: v["layout"]["pre_scroll"] for d, v in visits.items() if v["layout"]["pre_scroll"]}
    assert not scrolling, "\n".join(
        f"{d}: {len(pres)} blocks, e.g. {pres[:3]}" for d, pres in scrolling.items()
    )


def test_wide_math_and_tables_scroll_in_their_own_box(visits, phone_layouts):
    offenders = [
        (width, docname, layout["math"] + layout["tables"])
        for width, docname, layout in layouts(visits, phone_layouts)
        if layout["math"] or layout["tables"]
    ]
    assert not offenders, offenders


def test_no_cell_above_the_chapter_title(visits, phone_layouts):
    for width, docname, layout in layouts(visits, phone_layouts):
        assert layout["cells_above_title"] == [], (width, docname, layout["cells_above_title"])


# Runs a search on the search page; returns the snippets once Sphinx says it finished.
SEARCH_JS = """async () => {
    const done = () => /Search finished/.test(
        (document.querySelector('#search-results .search-summary') || {}).textContent || '');
    for (let i = 0; i < 200 && !done(); i++) await new Promise(r => setTimeout(r, 100));
    return {done: done(),
            snippets: [...document.querySelectorAll('#search-results p.context')]
                .map(p => p.textContent)};
}"""


def test_search_snippets_show_math_without_tex(served, browser_context):
    """Sphinx cuts snippets from the pages' HTML, where math is TeX source ("\\(\\mu_B\\)");
    book/_static/search_math.js turns it into text ("μ_B") first."""
    page = browser_context.new_page()
    page.goto(f"{served}/search.html?q=variance+batch", wait_until="load")
    result = page.evaluate(SEARCH_JS)
    page.close()
    assert result["done"], "the search did not finish"
    snippets = result["snippets"]
    assert len(snippets) >= 5, snippets
    tex = [s for s in snippets if re.search(r"\\[()\[\]]", s)]  # \( \) \[ \]: math markup
    assert not tex, tex
    assert any(re.search("[μσγβε]", s) for s in snippets), snippets  # the math is there
