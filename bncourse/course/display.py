"""Show package code in a notebook from the object itself: ``show_source(bn.BatchNorm)``.

The result displays as highlighted HTML (Pygments, a fixed style, inline colours: no
stylesheet needed) in Jupyter, Colab and the built book, and as the plain source text in a
terminal or any front end without HTML.  The book shows package code only this way (or by
``literalinclude`` of non-Python text), never by pasting a copy that could drift.
"""

import inspect
import textwrap
from typing import Any

STYLE = "default"     # Pygments style; the HTML (compared by nbval) depends on it


class Source:
    """The source of one object: ``_repr_html_`` for notebooks, ``repr`` for text."""

    def __init__(self, code: str, name: str) -> None:
        self.code, self.name = code, name

    def __repr__(self) -> str:
        return self.code.rstrip("\n")

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        formatter = HtmlFormatter(style=STYLE, noclasses=True, nobackground=True)
        return highlight(self.code, PythonLexer(), formatter)


def show_source(obj: Any) -> Source:
    """The (dedented) source of a public function, class or method, for display."""
    code = textwrap.dedent(inspect.getsource(obj))
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    return Source(code, f"{getattr(obj, '__module__', '')}.{name}")
