"""The numerical policy every backend follows, written once.

Statistics are *shifted sums*: per statistic, a reference r close to the data (the mean of
a strided sample), then A = Σ (x − r) and B = Σ (x − r)² accumulated in float64,
μ = r + A/m, M2 = B − A²/m.  The relative error of M2 is about κ·u with κ = B/M2; above
:data:`KAPPA_MAX` the sums are taken again around r = μ (:func:`needs_recentring`, in the
loop :func:`shifted_moments`).  The NumPy tiles (:mod:`bncourse.kernels.numpy_tiles`) and the
torch backend (:mod:`bncourse.core.torch_stats`) call that loop; the CUDA kernel
(:mod:`bncourse.kernels.cuda`, an intended twin in CUDA C) writes the same test and reads
these constants from here.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

KAPPA_MAX = 8.0            # cancellation B/M2 tolerated before recentring on μ
REFERENCE_SAMPLE = 64      # CPU and torch: about this many strided values per statistic give r
REFERENCE_SAMPLE_GPU = 32  # CUDA kernels: values per channel of r (one warp; read from L2)

FLOAT_DTYPE_NAMES = ("float16", "float32", "float64")          # NumPy / CuPy inputs
TORCH_FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")
HALF_DTYPE_NAMES = ("float16", "bfloat16")                      # computed in float32


def dtype_name(dtype: Any) -> str:
    """'float32' for numpy.float32, cupy.float32, numpy.dtype('float32'), torch.float32, ..."""
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(dtype, type):                     # numpy.float16 (a scalar type)
        return dtype.__name__
    return str(dtype).rsplit(".", 1)[-1]


def compute_dtype(dtype: Any) -> Any:
    """The dtype a computation on ``dtype`` data runs in: float16/bfloat16 in float32,
    float32 and float64 in themselves.  A torch dtype gives a torch dtype; anything else
    (NumPy/CuPy dtypes or scalar types) a ``numpy.dtype``."""
    half = dtype_name(dtype) in HALF_DTYPE_NAMES
    if type(dtype).__module__ == "torch":
        import torch
        return torch.float32 if half else dtype
    return np.dtype(np.float32) if half else np.dtype(dtype)


def needs_recentring(b: Any, m2: Any) -> bool:
    """Whether shifted sums must be taken again around μ: κ = B/M2 > ``KAPPA_MAX`` for any
    statistic.  ``b`` = B = Σ (x − r)², ``m2`` = M2 = B − A²/m ≥ 0 (float64 arrays or tensors
    of one shape).

    Written ``B > KAPPA_MAX·M2``, not ``B/M2 > KAPPA_MAX``: nothing is divided, so M2 = 0 (a
    constant channel, a single value) needs no special case — B > 0 there means r missed the
    constant (κ = ∞: recentre), B = 0 that r is the constant (nothing to gain); and since
    ``KAPPA_MAX`` is a power of two, KAPPA_MAX·M2 is exact and so is the comparison (a
    rounded quotient could equal ``KAPPA_MAX`` while κ exceeds it).  A NaN statistic
    compares False: recentring cannot repair it.  The CUDA kernel writes the same test.
    """
    return bool((b > KAPPA_MAX * m2).any())


def shifted_moments(sum_around: Callable[[Any], tuple[Any, Any, Any, Any]], ref: Any,
                    count: int) -> tuple[Any, Any, Any]:
    """μ and M2 from shifted sums around ``ref``, taken once more around μ when
    :func:`needs_recentring` says so: the recentring loop, written once for the NumPy tiles
    and torch (``.clip`` and ``.any`` exist on NumPy arrays and torch tensors alike).

    ``sum_around(ref)`` rounds ``ref`` (the first guess, then the float64 μ) to the compute
    dtype, giving r, sums the m = ``count`` values around it and returns
    ``(r64, A, B, extra)``: r in float64, A = Σ (x − r), B = Σ (x − r)² (float64), and what
    the caller wants back from the pass that is kept (r, the shifted values t).
    Returns ``(mean, m2, extra)`` with μ = r + A/m and M2 = max(B − A²/m, 0): the biased
    variance is M2/m.
    """
    for attempt in range(2):
        r64, a, b, extra = sum_around(ref)
        m2 = (b - a * a / count).clip(min=0.0)
        mean = r64 + a / count
        if attempt == 1 or not needs_recentring(b, m2):
            break
        ref = mean                     # recentre on the (now well-known) mean and sum again
    return mean, m2, extra
