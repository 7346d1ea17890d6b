"""bncourse.cupy — the API of ``bncourse.numpy`` on CuPy arrays (GPU).

Functional API (each forward returns ``(y, cache)``, each backward takes ``(dy, cache)``):
``batch_norm_forward``, ``batch_norm_backward``, ``batch_norm_inference``, and the same
pairs for ``layer_norm``, ``instance_norm``, ``group_norm``, ``rms_norm``, ``batch_renorm``;
stateful layers ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm``,
``BatchRenorm`` whose parameters and buffers are CuPy arrays.  Conventions as in
``bncourse.numpy``.

Training-mode batch norm runs the fused CUDA kernels of ``bncourse._cupy_kernels`` (chosen
by ``bncourse._api.fast_kernels``); everything else runs ``bncourse.generic`` — the very
code NumPy runs, on CuPy arrays.

Importing this module needs neither CuPy nor a GPU: :func:`is_available` says whether both
are there, and every function or layer raises a clear error otherwise (ImportError without
CuPy, RuntimeError with CuPy but no CUDA device).
"""

from . import functional as _api
from . import layers as _layers

try:
    import cupy as _cp
except ImportError:  # pragma: no cover - depends on the machine
    _cp = None

NO_CUPY = ("bncourse.cupy needs CuPy and a CUDA GPU, and CuPy is not installed: "
           "pip install 'bncourse[gpu]' (cupy-cuda12x) on a machine with an NVIDIA driver, "
           "or use bncourse.numpy")
NO_DEVICE = ("bncourse.cupy needs a CUDA GPU: CuPy is installed but sees no usable CUDA "
             "device (cupy.cuda.is_available() is False); use bncourse.numpy on this machine")


def is_available():
    """True when CuPy is installed and sees at least one CUDA device."""
    if _cp is None:
        return False
    try:
        return bool(_cp.cuda.is_available())
    except Exception:  # a broken driver or runtime: treat as unavailable
        return False


def unavailable_error():
    """The exception saying why this backend cannot run here, or None if it can."""
    if _cp is None:
        return ImportError(NO_CUPY)
    return None if is_available() else RuntimeError(NO_DEVICE)


def _check_cupy(x):
    if _cp is not None and isinstance(x, _cp.ndarray):
        return
    problem = unavailable_error()
    if problem is not None:
        raise problem
    raise TypeError(f"bncourse.cupy expects cupy.ndarray inputs, got "
                    f"{type(x).__module__}.{type(x).__name__}")


globals().update(_api.functions_for(_check_cupy, __name__))
globals().update(_layers.bind(_cp, __name__, unavailable=unavailable_error))

__all__ = ["is_available", "unavailable_error", *_api.PUBLIC,
           *(cls.__name__ for cls in _layers.LAYERS)]
