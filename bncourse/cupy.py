"""bncourse.cupy — the API of ``bncourse.numpy`` on CuPy arrays (GPU).

Functional API (each forward returns ``(y, cache)``, each backward takes ``(dy, cache)``):
``batch_norm_forward``, ``batch_norm_backward``, ``batch_norm_inference``, and the same
pairs for ``layer_norm``, ``instance_norm``, ``group_norm``, ``rms_norm``, ``batch_renorm``;
stateful layers ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm``,
``BatchRenorm`` whose parameters and buffers are CuPy arrays.  Conventions as in
``bncourse.numpy``.

Training-mode batch norm runs the fused CUDA kernels of :mod:`bncourse.kernels.cuda` (chosen
by :func:`bncourse.kernels.select`); everything else runs the closed forms of
:mod:`bncourse.core` — the very code NumPy runs, on CuPy arrays.

Importing this module needs neither CuPy nor a GPU: :func:`is_available` says whether both
are there, and every function or layer raises a clear error otherwise (ImportError without
CuPy, RuntimeError with CuPy but no CUDA device).
"""

from collections.abc import Sequence
from typing import Any

from . import functional as _functional
from . import layers as _layers

_CUPY_IMPORT_ERROR: ImportError | None = None  # why `import cupy` failed, for chaining
try:
    import cupy as _cp
except ImportError as exc:  # pragma: no cover - depends on the machine
    _cp, _CUPY_IMPORT_ERROR = None, exc

Array = Any     # the array type of this backend

__all__ = ["is_available", "unavailable_error",
           "batch_norm_forward", "batch_norm_backward", "batch_norm_inference",
           "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
           "instance_norm_forward", "instance_norm_backward", "group_norm_forward",
           "group_norm_backward", "batch_renorm_forward", "batch_renorm_backward",
           "BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "BatchRenorm"]

NO_CUPY = ('bncourse.cupy needs CuPy and a CUDA GPU, and CuPy is not installed: '
           'pip install "bncourse[gpu]" (cupy-cuda12x) on a machine with an NVIDIA driver, '
           'or use bncourse.numpy')
NO_DEVICE = ("bncourse.cupy needs a CUDA GPU: CuPy is installed but sees no usable CUDA "
             "device (cupy.cuda.is_available() is False); use bncourse.numpy on this machine")


def is_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    if _cp is None:
        return False
    try:
        return bool(_cp.cuda.is_available())
    except Exception:  # a broken driver or runtime: treat as unavailable
        return False


def unavailable_error() -> Exception | None:
    """The exception saying why this backend cannot run here, or None if it can."""
    if _cp is None:
        error = ImportError(NO_CUPY)
        error.__cause__ = _CUPY_IMPORT_ERROR  # raised, it reads "... was the direct cause"
        return error
    return None if is_available() else RuntimeError(NO_DEVICE)


def _check_cupy(x: object) -> None:
    """The array-type guard of this backend: CuPy arrays, on a machine that can run them."""
    if _cp is not None and isinstance(x, _cp.ndarray):
        return
    problem = unavailable_error()
    if problem is not None:
        raise problem
    raise TypeError(f"bncourse.cupy expects cupy.ndarray inputs, got "
                    f"{type(x).__module__}.{type(x).__name__}")


# ----------------------------------------------------------------------------- functions


def batch_norm_forward(x: Array, gamma: Array | None = None, beta: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, Any]:
    """Training-mode batch norm with the batch's statistics: (y, cache)
    See :func:`bncourse.functional.batch_norm_forward`."""
    _check_cupy(x)
    return _functional.batch_norm_forward(x, gamma, beta, eps)


def batch_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Gradients of training-mode batch norm: (dx, dgamma, dbeta)
    See :func:`bncourse.functional.batch_norm_backward`."""
    _check_cupy(dy)
    return _functional.batch_norm_backward(dy, cache)


def batch_norm_inference(x: Array, running_mean: Array, running_var: Array,
                         gamma: Array | None = None, beta: Array | None = None,
                         eps: float = 1e-5) -> Array:
    """Eval-mode batch norm with fixed statistics: y
    See :func:`bncourse.functional.batch_norm_inference`."""
    _check_cupy(x)
    return _functional.batch_norm_inference(x, running_mean, running_var, gamma, beta, eps)


def layer_norm_forward(x: Array, normalized_shape: int | Sequence[int],
                       weight: Array | None = None, bias: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, Any]:
    """Layer norm over the trailing ``normalized_shape`` dims: (y, cache)
    See :func:`bncourse.functional.layer_norm_forward`."""
    _check_cupy(x)
    return _functional.layer_norm_forward(x, normalized_shape, weight, bias, eps)


def layer_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`layer_norm_forward`: (dx, dweight, dbias)
    See :func:`bncourse.functional.layer_norm_backward`."""
    _check_cupy(dy)
    return _functional.layer_norm_backward(dy, cache)


def rms_norm_forward(x: Array, normalized_shape: int | Sequence[int], weight: Array | None = None,
                     eps: float | None = None) -> tuple[Array, Any]:
    """RMS norm over the trailing ``normalized_shape`` dims: (y, cache)
    See :func:`bncourse.functional.rms_norm_forward`."""
    _check_cupy(x)
    return _functional.rms_norm_forward(x, normalized_shape, weight, eps)


def rms_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None]:
    """Backward of :func:`rms_norm_forward`: (dx, dweight)
    See :func:`bncourse.functional.rms_norm_backward`."""
    _check_cupy(dy)
    return _functional.rms_norm_backward(dy, cache)


def instance_norm_forward(x: Array, weight: Array | None = None, bias: Array | None = None,
                          eps: float = 1e-5) -> tuple[Array, Any]:
    """Instance norm, each (sample, channel) over space: (y, cache)
    See :func:`bncourse.functional.instance_norm_forward`."""
    _check_cupy(x)
    return _functional.instance_norm_forward(x, weight, bias, eps)


def instance_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`instance_norm_forward`: (dx, dweight, dbias)
    See :func:`bncourse.functional.instance_norm_backward`."""
    _check_cupy(dy)
    return _functional.instance_norm_backward(dy, cache)


def group_norm_forward(x: Array, num_groups: int, weight: Array | None = None,
                       bias: Array | None = None, eps: float = 1e-5) -> tuple[Array, Any]:
    """Group norm, each (sample, group) over its channels and space: (y, cache)
    See :func:`bncourse.functional.group_norm_forward`."""
    _check_cupy(x)
    return _functional.group_norm_forward(x, num_groups, weight, bias, eps)


def group_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`group_norm_forward`: (dx, dweight, dbias)
    See :func:`bncourse.functional.group_norm_backward`."""
    _check_cupy(dy)
    return _functional.group_norm_backward(dy, cache)


def batch_renorm_forward(x: Array, gamma: Array | None, beta: Array | None, running_mean: Array,
                         running_std: Array, r_max: float = 3.0, d_max: float = 5.0,
                         eps: float = 1e-5) -> tuple[Array, Any, Any]:
    """Batch renormalization training step (Ioffe 2017): (y, cache, stats)
    See :func:`bncourse.functional.batch_renorm_forward`."""
    _check_cupy(x)
    return _functional.batch_renorm_forward(x, gamma, beta, running_mean, running_std, r_max,
                                            d_max, eps)


def batch_renorm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of :func:`batch_renorm_forward`: (dx, dgamma, dbeta)
    See :func:`bncourse.functional.batch_renorm_backward`."""
    _check_cupy(dy)
    return _functional.batch_renorm_backward(dy, cache)


# ----------------------------------------------------------------------------- layers


class _CuPyLayer:
    """Parameters and buffers are CuPy arrays: constructing a layer raises where CuPy or its
    GPU is missing; inputs are checked to be CuPy arrays."""

    xp = _cp
    unavailable = staticmethod(unavailable_error)
    check_array_type = staticmethod(_check_cupy)


class BatchNorm(_CuPyLayer, _layers.BatchNorm):
    """Batch norm over axis 1 with CuPy parameters and buffers;
    see :class:`bncourse.layers.BatchNorm`."""


class LayerNorm(_CuPyLayer, _layers.LayerNorm):
    """Layer norm over the trailing dims with CuPy parameters and buffers;
    see :class:`bncourse.layers.LayerNorm`."""


class RMSNorm(_CuPyLayer, _layers.RMSNorm):
    """RMS norm over the trailing dims with CuPy parameters and buffers;
    see :class:`bncourse.layers.RMSNorm`."""


class GroupNorm(_CuPyLayer, _layers.GroupNorm):
    """Group norm with CuPy parameters and buffers;
    see :class:`bncourse.layers.GroupNorm`."""


class InstanceNorm(_CuPyLayer, _layers.InstanceNorm):
    """Instance norm with CuPy parameters and buffers;
    see :class:`bncourse.layers.InstanceNorm`."""


class BatchRenorm(_CuPyLayer, _layers.BatchRenorm):
    """Batch renormalization (Ioffe 2017) with CuPy parameters and buffers;
    see :class:`bncourse.layers.BatchRenorm`."""
