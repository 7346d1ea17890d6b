"""Fast paths for training-mode batch norm, behind one interface and one selector.

:mod:`bncourse.kernels.numpy_tiles` (cache-sized tiles on a thread pool,
:mod:`bncourse.kernels.threads`) serves NumPy arrays; :mod:`bncourse.kernels.cuda` (fused
CUDA kernels) serves CuPy arrays.  Both are modules satisfying :class:`BatchNormKernels`, and
:func:`select` is the one place that picks between them and the generic path of
:mod:`bncourse.core.closed_form`.  The numerical policy both follow is
:mod:`bncourse.core.policy`.
"""

import sys
from typing import Any, Protocol

import numpy as np


class BatchNormKernels(Protocol):
    """What a fast path provides.  ``forward`` returns ``(y, cache)`` where ``cache`` has
    ``mean``, ``var`` (biased), ``count``, ``shape`` and ``backward(dy) -> (dx, dgamma,
    dbeta)``; inputs are validated by the caller (:mod:`bncourse.functional`)."""

    def supports(self, x: Any) -> bool: ...

    def forward(self, x: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, Any]: ...


def select(x: Any) -> "BatchNormKernels | None":
    """The fast batch-norm kernels for ``x``'s array library, or None for the generic path:
    :mod:`~bncourse.kernels.numpy_tiles` for NumPy arrays, the fused CUDA kernels of
    :mod:`~bncourse.kernels.cuda` for CuPy arrays (imported on first use: NumPy users never
    import CuPy)."""
    if isinstance(x, np.ndarray):
        from . import numpy_tiles
        return numpy_tiles if numpy_tiles.supports(x) else None
    cupy = sys.modules.get("cupy")          # a CuPy array means CuPy is imported already
    if cupy is not None and isinstance(x, cupy.ndarray):
        from . import cuda
        return cuda if cuda.supports(x) else None
    return None
