"""Checks at the public boundary.

Every check raises before any state is touched, with a message naming the offending value,
so that a failed call leaves running statistics and counters unchanged.  Where PyTorch has
a message for the same condition we use its wording.
"""

import math

FLOAT_DTYPE_NAMES = ("float16", "float32", "float64")


def dtype_name(dtype):
    """'float32' for numpy.float32, cupy.float32, numpy.dtype('float32'), ..."""
    return getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]


def check_array(x, name="input"):
    """``x`` must be an array with a float16/float32/float64 dtype."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim")):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if dtype_name(x.dtype) not in FLOAT_DTYPE_NAMES:
        raise TypeError(
            f"{name} must have a floating-point dtype (float16, float32 or float64), "
            f"got {dtype_name(x.dtype)}"
        )


def check_ndim(x, low=2, high=5, name="input"):
    """PyTorch's wording: 'expected 2D or 3D input (got 1D input)'."""
    if not low <= x.ndim <= high:
        want = f"{low}D" if low == high else (f"{low}D or {high}D" if high == low + 1 else f"{low}D to {high}D")
        raise ValueError(f"expected {want} {name} (got {x.ndim}D {name})")


def check_channel_vector(v, num_channels, name, where="the input has {C} channels (dim 1)"):
    """A per-channel vector (gamma, beta, running stats) must be 1-D with C floats."""
    if v is None:
        return
    check_array(v, name)
    if tuple(v.shape) != (num_channels,):
        raise ValueError(
            f"{name} should contain {num_channels} elements, got shape {tuple(v.shape)}: "
            + where.format(C=num_channels)
        )


def check_input_channels(x, num_channels, low=2, high=5):
    """A layer's input: a float array of ``low``..``high`` dims with ``num_channels`` on axis 1."""
    check_array(x)
    check_ndim(x, low, high)
    if x.shape[1] != num_channels:
        raise ValueError(
            f"expected input with {num_channels} channels (dim 1), got input of shape {tuple(x.shape)}"
        )


def check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")


def check_momentum(momentum):
    """``None`` means a cumulative average; otherwise the weight of the new value, in [0, 1]."""
    if momentum is None:
        return
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be a number in [0, 1] or None, got {momentum!r}")


def check_batch_size(shape, reduced_axes):
    """Training needs more than one value per channel (PyTorch's condition and message)."""
    count = math.prod(shape[a] for a in reduced_axes)
    if count <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {tuple(shape)}"
        )


def check_grad(dy, shape, name="dy"):
    """The upstream gradient must match the forward output's shape."""
    check_array(dy, name)
    if tuple(dy.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(dy.shape)} but the forward output had shape {tuple(shape)}")
