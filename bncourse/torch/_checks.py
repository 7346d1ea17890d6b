"""Argument checks of ``bncourse.torch``, run before any state is touched.

Where PyTorch has a message for the same condition we use its wording (so that code and
tests written against ``torch.nn.functional`` read the same); elsewhere a ``ValueError`` or
``TypeError`` names the offending value.  Where PyTorch raises ``RuntimeError`` (size
mismatches, missing running statistics) ours raise :class:`InputError`, which is both a
``ValueError`` (the house rule) and a ``RuntimeError`` (what code written for PyTorch
catches).
"""

import math
import numbers

import torch

from .._validation import check_ndim
from ._stats import FLOAT_DTYPES, HALF_DTYPES


class InputError(ValueError, RuntimeError):
    """An argument that does not fit the others (PyTorch: ``RuntimeError``)."""


class UnsupportedDTypeError(TypeError, NotImplementedError):
    """A tensor that is not floating point (PyTorch: ``NotImplementedError``, "not
    implemented for 'Long'", a ``RuntimeError``)."""


class MixedDTypeError(TypeError, RuntimeError):
    """A parameter or running statistic whose dtype does not go with the input's
    (PyTorch: ``RuntimeError: mixed dtype (CPU) ...``)."""


# Validation rule (issue 14): no upper bound on the dims (PyTorch computes 6-D and more;
# was: 2-D to 5-D), and too few dims is an InputError (PyTorch: RuntimeError; was ValueError).
def check_input(x, low=2, high=None, name="input"):
    """A floating-point tensor with at least ``low`` dims (at most ``high`` if given)."""
    check_tensor(x, name)
    if high is not None:
        check_ndim(x, low, high, name)
    elif x.ndim < low:
        raise InputError(f"expected at least {low}D {name} (got {x.ndim}D {name})")


def check_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:      # issue 14: was a plain TypeError
        raise UnsupportedDTypeError(f"{name} must have a floating-point dtype (float16, "
                                    f"bfloat16, float32 or float64), got {x.dtype}")


# Validation rule (issue 14): PyTorch's dtype pairing, was: any floating dtype.
def check_dtype_pair(v, name, input_dtype):
    """A parameter or running statistic has the input's dtype, or float32 for a float16 /
    bfloat16 input (PyTorch's CPU and CUDA kernels refuse every other pairing)."""
    if v.dtype != input_dtype and not (input_dtype in HALF_DTYPES and v.dtype == torch.float32):
        allowed = "float32 or " + str(input_dtype) if input_dtype in HALF_DTYPES else str(input_dtype)
        raise MixedDTypeError(f"{name} has dtype {v.dtype} but the input has {input_dtype}: "
                              f"expected {allowed} (mixed dtypes, as in PyTorch)")


def check_channel_vector(v, num_channels, name, device, input_dtype=None, vector=False):
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


def check_device(v, name, device):
    if v.device != device:           # issue 14: InputError (PyTorch: RuntimeError), was ValueError
        raise InputError(f"{name} is on {v.device} but the input is on {device}")


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


def check_eps(eps, training, op="batch_norm", sign=True):
    """PyTorch's rule for batch norm: eps > 0 when training, eps >= 0 otherwise.
    ``sign=False`` (layer, group, instance, RMS norm, where PyTorch computes with any eps;
    issue 14, was eps >= 0): any finite eps.  Non-finite eps is refused everywhere
    (PyTorch silently returns NaN)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps):
        raise TypeError(f"{op} eps must be a finite real number, got {eps!r}")
    if not sign:
        return
    if training and eps <= 0:
        raise ValueError(f"{op} eps must be positive during training, but got {eps}")
    if eps < 0:
        raise ValueError(f"{op} eps must be non-negative, but got {eps}")


# Validation rule (issue 14): any finite momentum, as PyTorch computes (1 − f)·old + f·new
# for any f; was [0, 1].  NaN, inf and bool stay refused (PyTorch silently uses them).
def check_momentum(momentum):
    """The functional's momentum: the weight f of the new value, a finite number."""
    if momentum is None:
        raise TypeError("momentum must be a number, got None (the cumulative average "
                        "momentum=None is a module option: it needs num_batches_tracked)")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not math.isfinite(momentum):
        raise ValueError(f"momentum must be a finite number, got {momentum!r}")


# Validation rule (issue 14): PyTorch's argument types; was: anything bool() accepts.
def check_bool(value, name, op):
    if not isinstance(value, bool):
        raise TypeError(f"{op}(): argument '{name}' must be bool, not {type(value).__name__}")


def check_shape_argument(shape, op):
    """normalized_shape: a tuple, list or torch.Size of ints (PyTorch refuses an int)."""
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
