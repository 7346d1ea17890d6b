"""Serve MathJax from the built book instead of a CDN, so the book works offline.

Sphinx loads MathJax 3 from jsDelivr by default. This extension copies the MathJax 3.2.2
``es5`` files shipped in the PyPI package ``django-static-mathjax`` (import name
``mathjax``; it has no dependencies, despite its name) into ``_static/mathjax`` of the HTML
output and points ``mathjax_path`` there. Sphinx puts a relative ``mathjax_path`` under
``_static/``, so every page links the local copy with the right relative URL.

Wired in ``_config.yml`` with ``sphinx: local_extensions: {local_mathjax: book/_ext}``.
"""

from __future__ import annotations

from importlib import resources
import json
from pathlib import Path
import shutil

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

MATHJAX_VERSION = "3.2.2"
ENTRY = "tex-mml-chtml.js"  # the component Sphinx loads by default, CHTML output
# What tex-mml-chtml.js loads at run time: TeX extensions, the menu (ui), accessibility
# (a11y + the speech rule engine it loads on demand), and the CHTML output with its fonts.
PARTS = [ENTRY, "input", "ui", "a11y", "sre", "adaptors", "output/chtml.js", "output/chtml"]
STATIC_SUBDIR = "mathjax"


def mathjax_source() -> Path:
    """The ``es5`` folder of MathJax in django-static-mathjax, checked for the version."""
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax"
    except ModuleNotFoundError as exc:
        raise ExtensionError(
            "local_mathjax: install django-static-mathjax==3.2.2.1 (the `book` extra)"
        ) from exc
    version = json.loads((root / "package.json").read_text())["version"]
    if version != MATHJAX_VERSION:
        raise ExtensionError(f"local_mathjax: expected MathJax {MATHJAX_VERSION}, got {version}")
    return root / "es5"


def set_mathjax_path(app: Sphinx, config: Config) -> None:
    # Relative, so Sphinx links it as _static/mathjax/tex-mml-chtml.js on every page.
    config.mathjax_path = f"{STATIC_SUBDIR}/{ENTRY}"


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """Copy the MathJax files into ``<outdir>/_static/mathjax`` after an HTML build."""
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / STATIC_SUBDIR
    for part in PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)


def setup(app: Sphinx) -> dict:
    mathjax_source()  # fail at start-up, not after a long build, if MathJax is missing
    app.connect("config-inited", set_mathjax_path)
    app.connect("build-finished", copy_mathjax)
    return {"version": MATHJAX_VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
