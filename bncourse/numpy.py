"""bncourse.numpy — batch norm and its alternatives on NumPy arrays (CPU).

Functional API (each forward returns ``(y, cache)``, each backward takes ``(dy, cache)``):
``batch_norm_forward``, ``batch_norm_backward``, ``batch_norm_inference``, and the same
pairs for ``layer_norm``, ``instance_norm``, ``group_norm``, ``rms_norm``, ``batch_renorm``.
Stateful layers: ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm``,
``BatchRenorm``.  Channels on axis 1; biased variance to normalize, unbiased for
``running_var``; ``momentum`` weights the new value (``None``: cumulative average).

Training-mode batch norm runs the blocked, multi-threaded kernels of
``bncourse._numpy_kernels``; everything else runs the float64 generic path of
``bncourse.generic``.  ``set_num_threads`` sets the kernels' thread count.
"""

import numpy as _np

from . import functional as _api
from . import layers as _layers
from .kernels.threads import get_num_threads, set_num_threads


def _check_numpy(x):
    if not isinstance(x, _np.ndarray):
        raise TypeError(f"bncourse.numpy expects numpy.ndarray inputs, got "
                        f"{type(x).__module__}.{type(x).__name__}")


globals().update(_api.functions_for(_check_numpy, __name__))
globals().update(_layers.bind(_np, __name__))

__all__ = [*_api.PUBLIC, *(cls.__name__ for cls in _layers.LAYERS),
           "get_num_threads", "set_num_threads"]
