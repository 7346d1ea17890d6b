"""Point each chapter's Colab button and notebook download at the Colab edition.

sphinx-book-theme builds the Colab launch URL from ``repository`` + the page's path, so it
would open ``book/NN_topic.ipynb``, whose MyST directives and roles Colab shows as raw
text. ``tools/make_colab.py`` generates ``colab/NN_topic.ipynb`` (committed) in the
Markdown that Colab and plain Jupyter render; this extension

- rewrites the Colab URL of every page from ``.../blob/<branch>/book/<name>.ipynb`` to
  ``.../blob/<branch>/colab/<name>.ipynb``;
- copies the edition into the built site (``colab/<name>.ipynb``) and points the page's
  ``.ipynb`` download button there, so what a learner downloads for plain Jupyter is the
  edition too.

A chapter without its edition is a warning (an error under ``-W``). Wired in
``_config.yml`` with ``sphinx: local_extensions: {colab_edition: book/_ext}``.
"""

from __future__ import annotations

from pathlib import Path
import shutil

from sphinx.application import Sphinx
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
EDITION_DIR = "colab"  # in the repository (tools/make_colab.py) and in the built site


def edition_path(app: Sphinx, pagename: str) -> Path:
    return Path(app.srcdir) / EDITION_DIR / f"{Path(pagename).name}.ipynb"


def rewrite(buttons: list, pagename: str) -> int:
    """Rewrite, in place, the Colab and notebook-download URLs of ``buttons`` (nested
    groups included); returns how many were rewritten."""
    name = Path(pagename).name
    book_path, edition = f"/{pagename}.ipynb", f"/{EDITION_DIR}/{name}.ipynb"
    download = f"_sources/{pagename}.ipynb"
    count = 0
    for button in buttons:
        count += rewrite(button.get("buttons", []), pagename)
        url = button.get("url", "")
        if "colab.research.google.com" in url and url.endswith(book_path):
            button["url"] = url[: -len(book_path)] + edition
            count += 1
        elif url.endswith(download) and button.get("text") == ".ipynb":
            button["url"] = url[: -len(download)] + f"{EDITION_DIR}/{name}.ipynb"
            button["tooltip"] = "Download the notebook (Colab edition, for any Jupyter)"
            count += 1
    return count


def point_at_edition(app: Sphinx, pagename: str, templatename, context, doctree) -> None:
    buttons = context.get("header_buttons")
    if not buttons or context.get("page_source_suffix") != ".ipynb":
        return
    if not edition_path(app, pagename).is_file():
        LOGGER.warning(f"colab_edition: {EDITION_DIR}/{Path(pagename).name}.ipynb is missing "
                       "(run tools/make_colab.py)", location=pagename)
        return
    rewrite(buttons, pagename)


def copy_edition(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.srcdir) / EDITION_DIR
    if source.is_dir():
        target = Path(app.outdir) / EDITION_DIR
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("*.ipynb")):
            shutil.copy2(path, target / path.name)


def setup(app: Sphinx) -> dict:
    # After sphinx-book-theme has added its header buttons (default priority 500).
    app.connect("html-page-context", point_at_edition, priority=800)
    app.connect("build-finished", copy_edition)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
