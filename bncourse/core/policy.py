"""The numerical policy every backend follows, written once.

Statistics are *shifted sums*: per statistic, a reference r close to the data (the mean of
a strided sample), then A = Σ (x − r) and B = Σ (x − r)² accumulated in float64,
μ = r + A/m, M2 = B − A²/m.  The relative error of M2 is about κ·u with κ = B/M2; above
:data:`KAPPA_MAX` the sums are taken again around r = μ.  The kernels
(:mod:`bncourse.kernels.numpy_tiles`, :mod:`bncourse.kernels.cuda`) and the torch backend
(:mod:`bncourse.core.torch_stats`) read these constants from here.
"""

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
