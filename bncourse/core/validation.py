"""Argument checks at the public boundary: the one contract of every backend.

Every check raises before any state is touched, with a message naming the offending value,
so that a failed call leaves running statistics and counters unchanged.  Where PyTorch has a
message for the same condition we use its wording.  A wrong *type* is a ``TypeError``, a wrong
*value* a ``ValueError``; where PyTorch raises ``RuntimeError`` (size mismatches, missing
running statistics) the torch backend raises :class:`InputError`, both a ``ValueError`` and a
``RuntimeError``.

=====================  =====================================  =============================
argument               bad value                              exception
=====================  =====================================  =============================
x, dy, parameters      not an array (torch: not a Tensor)     TypeError
                       dtype not floating (NumPy/CuPy:        TypeError
                       float16/32/64; torch: + bfloat16)
x                      ndim outside the op's range (2D-5D)    ValueError (torch: fewer than
                       (torch functionals: no upper bound)    2D, InputError)
x, parameters (torch)  integer dtype                          UnsupportedDTypeError
                       parameter dtype not the input's (or    MixedDTypeError
                       float32 for half input)
                       on another device                      InputError
                       one value per channel when training    ValueError
per-channel vectors    wrong number of elements               ValueError (torch: InputError)
dy                     shape differs from the output's        ValueError
eps                    not a real number (str, None, bool)    TypeError
                       nan or ±inf                            ValueError
                       eps <= 0 in training (batch norm,      ValueError
                       batch renorm; layer constructors)
                       eps < 0 in eval / no-training ops      ValueError
                       (inference; not torch layer/RMS/group/
                       instance norm, which PyTorch computes)
momentum               not a real number (str, bool)          TypeError
                       nan or outside [0, 1]                  ValueError
                       (torch functionals: nan or ±inf)
training (torch)       not a bool                             TypeError
                       None where no counter exists           TypeError
                       (functional torch API, BatchRenorm)
counts (num_features,  not a positive int                     ValueError
num_groups, ...)
=====================  =====================================  =============================
"""

import math
import numbers

from .policy import FLOAT_DTYPE_NAMES, HALF_DTYPE_NAMES, TORCH_FLOAT_DTYPE_NAMES, dtype_name

__all__ = ["FLOAT_DTYPE_NAMES", "InputError", "MixedDTypeError", "UnsupportedDTypeError",
           "check_array", "check_batch_size", "check_bool",
           "check_channel_vector", "check_device", "check_dtype_pair", "check_eps", "check_grad",
           "check_input", "check_input_channels", "check_momentum", "check_ndim",
           "check_normalized_shape", "check_param_shape",
           "check_positive_int", "check_running_pair", "check_shape_argument", "check_tensor",
           "check_tensor_channels", "check_trailing_shape", "check_values_per_channel",
           "check_values_per_group", "dtype_name"]


class InputError(ValueError, RuntimeError):
    """An argument that does not fit the others (PyTorch: ``RuntimeError``)."""


class UnsupportedDTypeError(TypeError, NotImplementedError):
    """A tensor that is not floating point (PyTorch: ``NotImplementedError``, "not
    implemented for 'Long'", a ``RuntimeError``)."""


class MixedDTypeError(TypeError, RuntimeError):
    """A parameter or running statistic whose dtype does not go with the input's
    (PyTorch: ``RuntimeError: mixed dtype (CPU) ...``)."""


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
        want = (f"{low}D" if low == high else
                f"{low}D or {high}D" if high == low + 1 else f"{low}D to {high}D")
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


def check_normalized_shape(x, normalized_shape):
    """Layer and RMS norm on arrays: x ends with ``normalized_shape``; returns it as a tuple."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != shape:
        raise ValueError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*, "
            f"{', '.join(map(str, shape))}], but got input of size {list(x.shape)}"
        )
    return shape


def check_param_shape(v, shape, name):
    """An elementwise parameter (or None) of exactly ``shape``."""
    if v is None:
        return
    check_array(v, name)
    if tuple(v.shape) != tuple(shape):
        raise ValueError(f"{name} should have shape {tuple(shape)}, got {tuple(v.shape)}")


def check_input_channels(x, num_channels, low=2, high=5):
    """A layer's input: a float array of ``low``..``high`` dims with ``num_channels`` on axis 1."""
    check_array(x)
    check_ndim(x, low, high)
    if x.shape[1] != num_channels:
        raise ValueError(
            f"expected input with {num_channels} channels (dim 1), got input of shape {tuple(x.shape)}"
        )


def _check_real(value, name, op):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}{name} must be a finite real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{op}{name} must be a finite real number, got {value!r}")


def check_eps(eps, training=True, op="batch_norm", sign=True):
    """PyTorch's rule: eps > 0 when training, eps >= 0 otherwise (table above).
    ``sign=False`` (torch's layer, group, instance, RMS norm, where PyTorch computes with
    any eps; issue 14): any finite eps.  Non-finite eps is refused everywhere (PyTorch
    silently returns NaN)."""
    _check_real(eps, "eps", f"{op} ")
    if not sign:
        return
    if training and eps <= 0:
        raise ValueError(f"{op} eps must be positive during training, but got {eps}")
    if eps < 0:
        raise ValueError(f"{op} eps must be non-negative, but got {eps}")


def check_momentum(momentum, allow_none=True, bounded=True):
    """The weight f of the new value, a number in [0, 1]; ``None`` (a cumulative average)
    only where a counter of batches exists (``allow_none``).  ``bounded=False`` (torch
    functionals, issue 14: PyTorch computes (1 − f)·old + f·new for any f): any finite
    number; nan and ±inf stay refused (PyTorch silently uses them)."""
    if not bounded and momentum is not None:
        _check_real(momentum, "momentum", "")
        return
    if momentum is None:
        if allow_none:
            return
        raise TypeError("momentum must be a number in [0, 1], got None (the cumulative "
                        "average momentum=None is a module option: it needs num_batches_tracked)")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a number in [0, 1]{' or None' if allow_none else ''}, "
                        f"got {momentum!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be a number in [0, 1]{' or None' if allow_none else ''}, "
                         f"got {momentum!r}")


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
        raise ValueError(f"{name} has shape {tuple(dy.shape)} but the forward output had "
                         f"shape {tuple(shape)}")


# ----------------------------------------------------------------------------- torch tensors


def check_tensor(x, name):
    """A ``torch.Tensor`` with a floating-point dtype (float16, bfloat16, float32, float64)."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dtype_name(x.dtype) not in TORCH_FLOAT_DTYPE_NAMES:      # issue 14: was a plain TypeError
        raise UnsupportedDTypeError(f"{name} must have a floating-point dtype (float16, "
                                    f"bfloat16, float32 or float64), got {x.dtype}")


# Validation rule (issue 14): no upper bound on the dims (PyTorch computes 6-D and more;
# was: 2-D to 5-D), and too few dims is an InputError (PyTorch: RuntimeError; was ValueError).
def check_input(x, low=2, high=None, name="input"):
    """A floating-point tensor with at least ``low`` dims (at most ``high`` if given)."""
    check_tensor(x, name)
    if high is not None:
        check_ndim(x, low, high, name)
    elif x.ndim < low:
        raise InputError(f"expected at least {low}D {name} (got {x.ndim}D {name})")


def check_device(v, name, device):
    if v.device != device:           # issue 14: InputError (PyTorch: RuntimeError), was ValueError
        raise InputError(f"{name} is on {v.device} but the input is on {device}")


# Validation rule (issue 14): PyTorch's dtype pairing, was: any floating dtype.
def check_dtype_pair(v, name, input_dtype):
    """A parameter or running statistic has the input's dtype, or float32 for a float16 /
    bfloat16 input (PyTorch's CPU and CUDA kernels refuse every other pairing)."""
    half = dtype_name(input_dtype) in HALF_DTYPE_NAMES
    if v.dtype != input_dtype and not (half and dtype_name(v.dtype) == "float32"):
        allowed = "float32 or " + str(input_dtype) if half else str(input_dtype)
        raise MixedDTypeError(f"{name} has dtype {v.dtype} but the input has {input_dtype}: "
                              f"expected {allowed} (mixed dtypes, as in PyTorch)")


def check_tensor_channels(v, num_channels, name, device, input_dtype=None, vector=False):
    """A per-channel tensor (weight, bias, running statistics) with C elements; with
    ``input_dtype``, of a dtype that pairs with it (:func:`check_dtype_pair`); with
    ``vector``, 1-D (PyTorch's running statistics; weight and bias may be (1, C))."""
    if v is None:
        return
    check_tensor(v, name)
    if vector and v.dim() != 1:          # issue 14: was any shape with C elements
        raise InputError(f"{name} should be a 1-D tensor of {num_channels} elements, got shape "
                         f"{list(v.shape)}")
    if v.numel() != num_channels:
        raise InputError(f"{name} should contain {num_channels} elements not {v.numel()}")
    check_device(v, name, device)
    if input_dtype is not None:
        check_dtype_pair(v, name, input_dtype)


def check_values_per_channel(x, dims):
    """Training needs more than one value per statistic: PyTorch's condition and message."""
    if math.prod(x.shape[d] for d in dims) == 1:
        raise ValueError("Expected more than 1 value per channel when training, got input "
                         f"size {x.size()}")


# Validation rule (issue 14): new (was: zeros returned).
def check_values_per_group(x, num_groups):
    """Group norm: PyTorch's condition (N·C/G·prod(spatial) == 1, one value per group and a
    single sample) and message, which names the size [N·C/G, G, *spatial]."""
    size = [x.shape[0] * x.shape[1] // num_groups, num_groups] + list(x.shape[2:])
    if math.prod(size) // num_groups == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")


# Validation rule (issue 14): PyTorch's argument types; was: anything bool() accepts.
def check_bool(value, name, op):
    if not isinstance(value, bool):
        raise TypeError(f"{op}(): argument '{name}' must be bool, not {type(value).__name__}")


def check_shape_argument(shape, op):
    """normalized_shape: a tuple, list or torch.Size of ints (PyTorch refuses an int)."""
    import torch

    if not isinstance(shape, (tuple, list, torch.Size)) or \
            not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in shape):
        raise TypeError(f"{op}(): argument 'normalized_shape' must be tuple of ints, not "
                        f"{type(shape).__name__}")
    return tuple(int(n) for n in shape)


def check_running_pair(running_mean, running_var, training):
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must either both be None or neither be None")
    if running_mean is None and not training:
        raise InputError("running_mean must be defined in evaluation mode")


def check_trailing_shape(x, normalized_shape, weight, bias, pair_dtypes=True):
    """Layer and RMS norm: x ends with ``normalized_shape``; parameters have that shape and
    (``pair_dtypes``: layer norm) a dtype that pairs with the input's."""
    shape = list(normalized_shape)
    if not shape or x.ndim < len(shape) or list(x.shape[x.ndim - len(shape):]) != shape:
        raise InputError(f"Given normalized_shape={shape}, expected input with shape "
                         f"[*, {', '.join(map(str, shape))}], but got input of size{list(x.shape)}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        check_tensor(p, name)
        if list(p.shape) != shape:
            raise InputError(f"Expected {name} to be of same shape as normalized_shape, but got "
                             f"{name} of shape {list(p.shape)} and normalized_shape = {shape}")
        check_device(p, name, x.device)
        if pair_dtypes:
            check_dtype_pair(p, name, x.dtype)


def check_positive_int(n, name):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
