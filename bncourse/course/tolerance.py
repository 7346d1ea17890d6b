"""The one tolerance helper of the tests and the notebooks: tolerances from the dtype and a
normwise closeness check.

Normwise relative tolerance by dtype:  max|a − e| <= TOL · max(1, max|e|).

* float64: 1e-12 — agreement with PyTorch / float64 references;
* float32: 1e-5  — ~80 ulps: PyTorch's float32 kernel accumulates in float32;
* float16: 2e-3  — two float16 ulps at |y| ~ 1: the output rounding itself;
* integer and bool arrays (counters, labels) must be equal: tolerance 0.

Arrays may be NumPy or CuPy arrays or torch tensors (compared on the host, in float64).
"""

from typing import Any

import numpy as np

from ..core.policy import dtype_name

__all__ = ["TOL", "assert_close", "max_err", "normwise_error", "tol"]

TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}


def _host(a: Any) -> np.ndarray:
    """A float64 NumPy copy of an array, tensor or scalar."""
    if hasattr(a, "detach"):                       # torch tensor
        a = a.detach().cpu().numpy()
    elif hasattr(a, "get") and not isinstance(a, (np.ndarray, dict)):   # CuPy array
        a = a.get()
    return np.asarray(a, dtype=np.float64)


def tol(dtype: Any) -> float:
    """The normwise tolerance of ``dtype`` (NumPy/CuPy/torch dtype, scalar type or name)."""
    name = dtype_name(dtype)
    if name in TOL:
        return TOL[name]
    if np.issubdtype(np.dtype(name), np.integer) or name == "bool":
        return 0.0
    raise KeyError(f"no tolerance for dtype {name}")


def max_err(actual: Any, expected: Any) -> float:
    """max |actual − expected| (0 for empty arrays); the shapes must agree."""
    a, e = _host(actual), _host(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    return float(np.max(np.abs(a - e))) if a.size else 0.0


def normwise_error(actual: Any, expected: Any) -> float:
    """max |actual − expected| / max(1, max |expected|): the error the course's checks bound
    (absolute for small values, relative for large ones)."""
    a, e = _host(actual), _host(expected)
    if a.shape != e.shape:
        raise ValueError(f"shapes differ: {a.shape} and {e.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - e)) / max(1.0, float(np.max(np.abs(e)))))


def assert_close(actual: Any, expected: Any, dtype: Any = None, *, rtol: float | None = None,
                 what: str = "value") -> None:
    """Normwise check: max|a − e| <= rtol·max(1, max|e|), ``rtol`` from ``dtype`` (default:
    the dtype of ``actual``).  Returns None (a notebook cell ending with it shows nothing)."""
    if rtol is None:
        if dtype is None:
            dtype = actual.dtype if hasattr(actual, "dtype") else np.asarray(actual).dtype
        rtol = tol(dtype)
    a, e = _host(actual), _host(expected)
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
    err = max_err(a, e)
    assert np.all(np.isfinite(a)), f"{what}: non-finite values"
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:.1g} x {scale:.3g}"
