"""Emit each inline ``<script>`` once per page.

Sphinx 7.4 lists an inline script that an extension registers after the builder started
twice: once with ``filename=None`` (from ``app.add_js_file``) and once with ``''`` (when
the builder copies the registry), and ``_JavaScript`` equality tells them apart. For
sphinx-thebe's ``const THEBE_JS_URL = ...`` that is a JavaScript error on every page
("Identifier 'THEBE_JS_URL' has already been declared"), which the browser check of
tests/test_book.py reports. This drops the repeats from each page's script list.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def drop_repeated_inline_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        if "body" in script.attributes:  # inline: compare by content, not by filename
            key = (script.priority, tuple(sorted(script.attributes.items())))
            if key in seen:
                continue
            seen.add(key)
        kept.append(script)
    # In place: the builder restores this list from its own copy after each page.
    scripts[:] = kept


def setup(app: Sphinx) -> dict:
    # Late (priority 900), after the handlers that add page-specific scripts (MathJax).
    app.connect("html-page-context", drop_repeated_inline_scripts, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
