"""Array-namespace lookup: one place that decides which array library an input belongs to.

The generic algorithms are written once against the array API standard
(``xp = array_namespace(x)``).  With ``array-api-compat`` installed (the ``torch``,
``gpu`` and ``test`` extras) its ``array_namespace`` is used, which also serves CuPy and others.
Without it, NumPy arrays still work: NumPy >= 2.0 implements the standard in its main
namespace, so ``import bncourse`` needs NumPy alone.
"""

from typing import Any

import numpy as np

_compat_namespace: Any
try:  # pragma: no cover - which branch runs depends on the installed extras
    from array_api_compat import array_namespace as _compat_namespace
except ImportError:  # pragma: no cover
    _compat_namespace = None


def array_namespace(*arrays: Any) -> Any:
    """Return the array-API namespace shared by ``arrays`` (``None`` entries are ignored)."""
    present = [a for a in arrays if a is not None]
    if _compat_namespace is not None:
        return _compat_namespace(*present)
    if all(isinstance(a, np.ndarray) for a in present):
        return np
    kinds = sorted({type(a).__module__ + "." + type(a).__name__ for a in present})
    raise TypeError(f"unsupported array type(s) {kinds}: install array-api-compat for non-NumPy arrays")
