"""bncourse.cupy — the API of ``bncourse.numpy`` on CuPy arrays (GPU).

Importing this module needs neither CuPy nor a GPU: :func:`is_available` says whether both
are there, and every function or layer raises a clear error otherwise.  The functions run
the generic array-API path of ``bncourse.generic`` — the very code NumPy runs — unless
``bncourse._api.fast_kernels`` picks fused GPU kernels for the input.
"""

from . import _api, _layers

try:
    import cupy as _cp
except ImportError:  # pragma: no cover - depends on the machine
    _cp = None

MISSING = ("bncourse.cupy needs CuPy and a CUDA GPU: pip install 'bncourse[gpu]' "
           "(cupy-cuda12x) on a machine with an NVIDIA driver")


def is_available():
    """True when CuPy is installed and sees at least one CUDA device."""
    if _cp is None:
        return False
    try:
        return bool(_cp.cuda.is_available())
    except Exception:  # a broken driver or runtime: treat as unavailable
        return False


def _check_cupy(x):
    if _cp is None:
        raise ImportError(MISSING)
    if not isinstance(x, _cp.ndarray):
        raise TypeError(f"bncourse.cupy expects cupy.ndarray inputs, got "
                        f"{type(x).__module__}.{type(x).__name__}")


globals().update(_api.functions_for(_check_cupy, __name__))
globals().update(_layers.bind(_cp, __name__, unavailable=None if _cp is not None else MISSING))

__all__ = ["is_available", *_api.PUBLIC, *(cls.__name__ for cls in _layers.LAYERS)]
