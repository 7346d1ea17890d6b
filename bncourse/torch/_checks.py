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

from ..core.validation import check_ndim
from ._stats import FLOAT_DTYPES


class InputError(ValueError, RuntimeError):
    """An argument that does not fit the others (PyTorch: ``RuntimeError``)."""


def check_input(x, low=2, high=5, name="input"):
    """A floating-point tensor with ``low`` to ``high`` dims."""
    check_tensor(x, name)
    check_ndim(x, low, high, name)


def check_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating-point dtype (float16, bfloat16, float32 "
                        f"or float64), got {x.dtype}")


def check_channel_vector(v, num_channels, name, device):
    """A per-channel tensor (weight, bias, running statistics) with C elements."""
    if v is None:
        return
    check_tensor(v, name)
    if v.numel() != num_channels:
        raise InputError(f"{name} should contain {num_channels} elements not {v.numel()}")
    check_device(v, name, device)


def check_device(v, name, device):
    if v.device != device:
        raise ValueError(f"{name} is on {v.device} but the input is on {device}")


def check_values_per_channel(x, dims):
    """Training needs more than one value per statistic: PyTorch's condition and message."""
    if math.prod(x.shape[d] for d in dims) == 1:
        raise ValueError("Expected more than 1 value per channel when training, got input "
                         f"size {x.size()}")


def check_eps(eps, training, op="batch_norm"):
    """PyTorch's rule: eps > 0 when training, eps >= 0 otherwise."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps):
        raise TypeError(f"{op} eps must be a finite real number, got {eps!r}")
    if training and eps <= 0:
        raise ValueError(f"{op} eps must be positive during training, but got {eps}")
    if eps < 0:
        raise ValueError(f"{op} eps must be non-negative, but got {eps}")


def check_momentum(momentum):
    """The functional's momentum: the weight f of the new value, a number in [0, 1]."""
    if momentum is None:
        raise TypeError("momentum must be a number in [0, 1], got None (the cumulative "
                        "average momentum=None is a module option: it needs num_batches_tracked)")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")


def check_running_pair(running_mean, running_var, training):
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must either both be None or neither be None")
    if running_mean is None and not training:
        raise InputError("running_mean must be defined in evaluation mode")


def check_trailing_shape(x, normalized_shape, weight, bias):
    """Layer and RMS norm: x ends with ``normalized_shape``; parameters have that shape."""
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


def check_positive_int(n, name):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
