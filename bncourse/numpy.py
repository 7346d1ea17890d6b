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

from . import _layers
from ._api import (batch_norm_backward, batch_norm_forward, batch_norm_inference,
                   batch_renorm_backward, batch_renorm_forward, group_norm_backward,
                   group_norm_forward, instance_norm_backward, instance_norm_forward,
                   layer_norm_backward, layer_norm_forward, rms_norm_backward, rms_norm_forward)
from ._threads import get_num_threads, set_num_threads

globals().update(_layers.bind(_np, __name__))

__all__ = [
    "batch_norm_forward", "batch_norm_backward", "batch_norm_inference",
    "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
    "instance_norm_forward", "instance_norm_backward", "group_norm_forward",
    "group_norm_backward", "batch_renorm_forward", "batch_renorm_backward",
    "BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "BatchRenorm",
    "get_num_threads", "set_num_threads",
]
