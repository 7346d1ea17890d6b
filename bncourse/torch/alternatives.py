"""The alternatives to batch norm as ``torch.autograd.Function`` s with the closed-form
backward, and functions with the signatures of ``torch.nn.functional``.

===============  ==========================================  =======================
norm             one statistic per                           parameters
===============  ==========================================  =======================
layer norm       sample, over the trailing normalized_shape  elementwise, that shape
RMS norm         the same, mean square (no centering)        elementwise (weight)
group norm       (sample, group of C/G channels), over        per channel
                 the group's channels and space
instance norm    (sample, channel), over space               per channel
batch renorm     channel over (N, space), corrected towards   per channel
                 the running statistics (Ioffe 2017)
===============  ==========================================  =======================

All normalize by the *biased* variance and share the forward/backward of
:mod:`bncourse.torch._normalize` (so: float64-accumulated statistics, float32 compute for
half inputs, double backward).
"""

import math

import torch

from ..core.running import unbiased
from ..core import validation as _checks
from ._normalize import Plan, batch_plan, batch_statistics, ema_, function_backward, norm_forward
from .functional import batch_norm


def _channel_view(ndim):
    return (1, -1) + (1,) * (ndim - 2)


def _batch_dims(ndim):
    return (0,) + tuple(range(2, ndim))


def _check_eps(eps, op):
    _checks.check_eps(eps, training=False, op=op)


# ----------------------------------------------------------------------------- layer and RMS norm


def trailing_plan(ndim, normalized_shape, eps, center=True):
    """Layer norm (``center``) or RMS norm: statistics over the last len(shape) dims."""
    k = len(normalized_shape)
    return Plan(tuple(range(ndim - k, ndim)), tuple(normalized_shape), tuple(range(ndim - k)),
                False, eps, center=center)


class LayerNormFunction(torch.autograd.Function):
    """y = w·(x − μ)/sqrt(σ² + ε) + b, statistics of each sample over its trailing
    ``normalized_shape`` dims; w, b have shape ``normalized_shape``."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, bias, eps):
        plan = trailing_plan(input.ndim, normalized_shape, eps)
        return norm_forward(ctx, input, weight, bias, plan, positions=(0, 2, 3))[0]

    backward = staticmethod(function_backward)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm``: each sample normalized over its last
    ``len(normalized_shape)`` dims (biased variance)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    _checks.check_tensor(input, "input")
    _checks.check_trailing_shape(input, shape, weight, bias)
    _check_eps(eps, "layer_norm")
    return LayerNormFunction.apply(input, shape, weight, bias, eps)


class RMSNormFunction(torch.autograd.Function):
    """y = w·x/sqrt(mean(x²) + ε) over the trailing ``normalized_shape`` dims.
    Backward: dx = σ̂⁻¹·(g − x̂·mean(g·x̂)), g = w·dy."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, eps):
        plan = trailing_plan(input.ndim, normalized_shape, eps, center=False)
        return norm_forward(ctx, input, weight, None, plan, positions=(0, 2, 3))[0]

    backward = staticmethod(function_backward)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``torch.nn.functional.rms_norm``; ``eps=None`` is the machine epsilon of the input's
    dtype, as in PyTorch."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    _checks.check_tensor(input, "input")
    _checks.check_trailing_shape(input, shape, weight, None)
    eps = torch.finfo(input.dtype).eps if eps is None else eps
    _check_eps(eps, "rms_norm")
    return RMSNormFunction.apply(input, shape, weight, eps)


# ----------------------------------------------------------------------------- group norm


class GroupNormFunction(torch.autograd.Function):
    """Statistics of each (sample, group of C/G consecutive channels) over the group's
    channels and space; per-channel w, b.  Input (N, C, *spatial)."""

    @staticmethod
    def forward(ctx, input, num_groups, weight, bias, eps):
        ndim = input.ndim
        plan = Plan((2,), _channel_view(ndim), _batch_dims(ndim), False, eps,
                    work_shape=(input.shape[0], num_groups, -1))
        return norm_forward(ctx, input, weight, bias, plan, positions=(0, 2, 3))[0]

    backward = staticmethod(function_backward)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm``."""
    _checks.check_input(input, 2, 5)
    _checks.check_positive_int(num_groups, "num_groups")
    if input.shape[1] % num_groups:
        raise _checks.InputError(
            "Expected number of channels in input to be divisible by num_groups, but got input "
            f"of shape {list(input.shape)} and num_groups={num_groups}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            _checks.check_tensor(p, name)
            if p.dim() != 1 or p.numel() != input.shape[1]:
                raise _checks.InputError(
                    f"Expected {name} to be a vector of size equal to the number of channels in "
                    f"input, but got {name} of shape {list(p.shape)} and input of shape {list(input.shape)}")
            _checks.check_device(p, name, input.device)
    _check_eps(eps, "group_norm")
    return GroupNormFunction.apply(input, num_groups, weight, bias, eps)


# ----------------------------------------------------------------------------- instance norm


class InstanceNormFunction(torch.autograd.Function):
    """Statistics of each (sample, channel) over space; per-channel w, b.  Given running
    statistics are updated as PyTorch does: with the per-instance means and unbiased
    variances averaged over the batch."""

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, momentum, eps):
        ndim = input.ndim
        plan = Plan(tuple(range(2, ndim)), _channel_view(ndim), _batch_dims(ndim), False, eps)
        y, st = norm_forward(ctx, input, weight, bias, plan)
        if running_mean is not None and input.shape[0]:
            m = st.count
            ema_(running_mean, st.mean.mean(0), momentum)
            ema_(running_var, unbiased(st.var, m).mean(0), momentum)
        return y

    backward = staticmethod(function_backward)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """``torch.nn.functional.instance_norm``.  ``use_input_stats=False`` normalizes with the
    running statistics (batch norm in eval mode)."""
    _checks.check_input(input, 3, 5)
    C = input.shape[1]
    if use_input_stats and math.prod(input.shape[2:]) == 1:
        raise ValueError("Expected more than 1 spatial element when training, got input size "
                         f"{input.size()}")
    _checks.check_running_pair(running_mean, running_var, True)
    if not use_input_stats:
        if running_mean is None:
            raise _checks.InputError("Expected running_mean and running_var to be defined when "
                                     "use_input_stats is false")
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _checks.check_tensor_channels(v, C, name, input.device)
    _check_eps(eps, "instance_norm")
    if running_mean is not None:
        _checks.check_momentum(momentum, allow_none=False)
    return InstanceNormFunction.apply(input, weight, bias, running_mean, running_var, momentum, eps)


# ----------------------------------------------------------------------------- batch renorm


def renorm_statistics(running_mean, running_std, r_max, d_max):
    """Batch statistics plus the correction x̂ ← x̂·r + d of batch renormalization:
    r = clip(σ_B/σ, 1/r_max, r_max), d = clip((μ_B − μ)/σ, −d_max, d_max), constants."""
    def statistics(plan, xw):
        st, t = batch_statistics(plan, xw)
        mu = running_mean.detach().double().reshape(plan.param_view)
        sigma = running_std.detach().double().reshape(plan.param_view)
        st.gain = torch.clamp(1.0 / (st.invstd * sigma), 1.0 / r_max, r_max)
        st.offset = torch.clamp((st.mean - mu) / sigma, -d_max, d_max)
        return st, t
    return statistics


class BatchRenormFunction(torch.autograd.Function):
    """Batch renormalization, training step (Ioffe 2017, Algorithm 1):

        x̂ = (x − μ_B)/σ_B · r + d,   y = w·x̂ + b,   σ_B = sqrt(σ_B² + ε)  (biased σ_B²),

    r and d (see :func:`renorm_statistics`) held constant in the backward pass; then the
    running *mean* and *std* move towards μ_B and σ_B:  μ ← μ + f·(μ_B − μ),
    σ ← σ + f·(σ_B − σ), f = momentum.  With r_max = 1, d_max = 0 it is batch norm.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_std, momentum, eps, r_max, d_max):
        plan = batch_plan(input.ndim, eps, renorm_statistics(running_mean, running_std, r_max, d_max))
        y, st = norm_forward(ctx, input, weight, bias, plan)
        ema_(running_mean, st.mean, momentum)
        ema_(running_std, 1.0 / st.invstd, momentum)
        return y

    backward = staticmethod(function_backward)


def batch_renorm(input, running_mean, running_std, weight=None, bias=None, training=False,
                 momentum=0.01, eps=1e-5, r_max=3.0, d_max=5.0):
    """Batch renormalization (:class:`BatchRenormFunction`) in training; in eval
    y = w·(x − μ)/σ + b with the running mean μ and running std σ (which contains ε)."""
    _checks.check_input(input)
    C = input.shape[1]
    if training:
        _checks.check_values_per_channel(input, _batch_dims(input.ndim))
    for name, v in (("running_mean", running_mean), ("running_std", running_std),
                    ("weight", weight), ("bias", bias)):
        if v is None and name.startswith("running"):
            raise TypeError(f"batch_renorm needs {name}, got None")
        _checks.check_tensor_channels(v, C, name, input.device)
    _checks.check_eps(eps, training, "batch_renorm")
    if not r_max >= 1:
        raise ValueError(f"r_max must be >= 1, got {r_max!r}")
    if not d_max >= 0:
        raise ValueError(f"d_max must be >= 0, got {d_max!r}")
    if not training:     # σ already contains ε: normalize by σ itself
        return batch_norm(input, running_mean, running_std.double() ** 2, weight, bias, False, 0.0, 0.0)
    _checks.check_momentum(momentum, allow_none=False)
    return BatchRenormFunction.apply(input, weight, bias, running_mean, running_std, momentum,
                                     eps, r_max, d_max)


__all__ = ["LayerNormFunction", "layer_norm", "RMSNormFunction", "rms_norm",
           "GroupNormFunction", "group_norm", "InstanceNormFunction", "instance_norm",
           "BatchRenormFunction", "batch_renorm"]
