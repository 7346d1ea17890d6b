"""bncourse.numpy — batch norm and its alternatives on NumPy arrays (CPU).

Functional API (each forward returns ``(y, cache)``, each backward takes ``(dy, cache)``):
``batch_norm_forward``, ``batch_norm_backward``, ``batch_norm_inference``, and the same
pairs for ``layer_norm``, ``instance_norm``, ``group_norm``, ``rms_norm``, ``batch_renorm``.
Stateful layers: ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm``,
``BatchRenorm``.  Channels on axis 1; biased variance to normalize, unbiased for
``running_var``; ``momentum`` weights the new value (``None``: cumulative average).

Every function and layer first checks that its array is a ``numpy.ndarray``, then runs
:mod:`bncourse.functional` (validation, then the fast path :func:`bncourse.kernels.select`
picks: the blocked, multi-threaded kernels of :mod:`bncourse.kernels.numpy_tiles` for
training-mode batch norm, the float64 closed forms of :mod:`bncourse.core` otherwise).
``set_num_threads`` sets the kernels' thread count.
"""

from collections.abc import Sequence
from typing import Any

import numpy as _np

from . import functional as _functional
from . import layers as _layers
from .kernels.threads import get_num_threads, set_num_threads

Array = _np.ndarray     # the array type of this backend

__all__ = ["batch_norm_forward", "batch_norm_backward", "batch_norm_inference",
           "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
           "instance_norm_forward", "instance_norm_backward", "group_norm_forward",
           "group_norm_backward", "batch_renorm_forward", "batch_renorm_backward",
           "BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "BatchRenorm",
           "get_num_threads", "set_num_threads"]


def _check_numpy(x: object) -> None:
    """The array-type guard of this backend: NumPy arrays only."""
    if not isinstance(x, _np.ndarray):
        raise TypeError(f"bncourse.numpy expects numpy.ndarray inputs, got "
                        f"{type(x).__module__}.{type(x).__name__}")


# ----------------------------------------------------------------------------- functions


def batch_norm_forward(x: Array, gamma: Array | None = None, beta: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, Any]:
    """Training-mode batch norm with the batch's statistics: (y, cache)
    See :func:`bncourse.functional.batch_norm_forward`."""
    _check_numpy(x)
    return _functional.batch_norm_forward(x, gamma, beta, eps)


def batch_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Gradients of training-mode batch norm: (dx, dgamma, dbeta)
    See :func:`bncourse.functional.batch_norm_backward`."""
    _check_numpy(dy)
    return _functional.batch_norm_backward(dy, cache)


def batch_norm_inference(x: Array, running_mean: Array, running_var: Array,
                         gamma: Array | None = None, beta: Array | None = None,
                         eps: float = 1e-5) -> Array:
    """Eval-mode batch norm with fixed statistics: y
    See :func:`bncourse.functional.batch_norm_inference`."""
    _check_numpy(x)
    return _functional.batch_norm_inference(x, running_mean, running_var, gamma, beta, eps)


def layer_norm_forward(x: Array, normalized_shape: int | Sequence[int],
                       weight: Array | None = None, bias: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, Any]:
    """Layer norm over the trailing ``normalized_shape`` dims: (y, cache)
    See :func:`bncourse.functional.layer_norm_forward`."""
    _check_numpy(x)
    return _functional.layer_norm_forward(x, normalized_shape, weight, bias, eps)


def layer_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`layer_norm_forward`: (dx, dweight, dbias)
    See :func:`bncourse.functional.layer_norm_backward`."""
    _check_numpy(dy)
    return _functional.layer_norm_backward(dy, cache)


def rms_norm_forward(x: Array, normalized_shape: int | Sequence[int], weight: Array | None = None,
                     eps: float | None = None) -> tuple[Array, Any]:
    """RMS norm over the trailing ``normalized_shape`` dims: (y, cache)
    See :func:`bncourse.functional.rms_norm_forward`."""
    _check_numpy(x)
    return _functional.rms_norm_forward(x, normalized_shape, weight, eps)


def rms_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None]:
    """Backward of :func:`rms_norm_forward`: (dx, dweight)
    See :func:`bncourse.functional.rms_norm_backward`."""
    _check_numpy(dy)
    return _functional.rms_norm_backward(dy, cache)


def instance_norm_forward(x: Array, weight: Array | None = None, bias: Array | None = None,
                          eps: float = 1e-5) -> tuple[Array, Any]:
    """Instance norm, each (sample, channel) over space: (y, cache)
    See :func:`bncourse.functional.instance_norm_forward`."""
    _check_numpy(x)
    return _functional.instance_norm_forward(x, weight, bias, eps)


def instance_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`instance_norm_forward`: (dx, dweight, dbias)
    See :func:`bncourse.functional.instance_norm_backward`."""
    _check_numpy(dy)
    return _functional.instance_norm_backward(dy, cache)


def group_norm_forward(x: Array, num_groups: int, weight: Array | None = None,
                       bias: Array | None = None, eps: float = 1e-5) -> tuple[Array, Any]:
    """Group norm, each (sample, group) over its channels and space: (y, cache)
    See :func:`bncourse.functional.group_norm_forward`."""
    _check_numpy(x)
    return _functional.group_norm_forward(x, num_groups, weight, bias, eps)


def group_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`group_norm_forward`: (dx, dweight, dbias)
    See :func:`bncourse.functional.group_norm_backward`."""
    _check_numpy(dy)
    return _functional.group_norm_backward(dy, cache)


def batch_renorm_forward(x: Array, gamma: Array | None, beta: Array | None, running_mean: Array,
                         running_std: Array, r_max: float = 3.0, d_max: float = 5.0,
                         eps: float = 1e-5) -> tuple[Array, Any, Any]:
    """Batch renormalization training step (Ioffe 2017): (y, cache, stats)
    See :func:`bncourse.functional.batch_renorm_forward`."""
    _check_numpy(x)
    return _functional.batch_renorm_forward(x, gamma, beta, running_mean, running_std, r_max,
                                            d_max, eps)


def batch_renorm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`batch_renorm_forward`: (dx, dgamma, dbeta)
    See :func:`bncourse.functional.batch_renorm_backward`."""
    _check_numpy(dy)
    return _functional.batch_renorm_backward(dy, cache)


# ----------------------------------------------------------------------------- layers


class _NumPyLayer:
    """Parameters and buffers are NumPy arrays; inputs are checked to be NumPy arrays."""

    xp = _np
    check_array_type = staticmethod(_check_numpy)


class BatchNorm(_NumPyLayer, _layers.BatchNorm):
    """Batch norm over axis 1 with NumPy parameters and buffers;
    see :class:`bncourse.layers.BatchNorm`."""


class LayerNorm(_NumPyLayer, _layers.LayerNorm):
    """Layer norm over the trailing dims with NumPy parameters and buffers;
    see :class:`bncourse.layers.LayerNorm`."""


class RMSNorm(_NumPyLayer, _layers.RMSNorm):
    """RMS norm over the trailing dims with NumPy parameters and buffers;
    see :class:`bncourse.layers.RMSNorm`."""


class GroupNorm(_NumPyLayer, _layers.GroupNorm):
    """Group norm with NumPy parameters and buffers;
    see :class:`bncourse.layers.GroupNorm`."""


class InstanceNorm(_NumPyLayer, _layers.InstanceNorm):
    """Instance norm with NumPy parameters and buffers;
    see :class:`bncourse.layers.InstanceNorm`."""


class BatchRenorm(_NumPyLayer, _layers.BatchRenorm):
    """Batch renormalization (Ioffe 2017) with NumPy parameters and buffers;
    see :class:`bncourse.layers.BatchRenorm`."""
