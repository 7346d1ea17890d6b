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

from ..core import validation as _checks
from ..core.running import unbiased
from ._normalize import (
    Plan,
    batch_plan,
    batch_statistics,
    contiguous_format,
    ema_,
    function_backward,
    function_jvp,
    norm_forward,
    norm_outputs,
    setup_norm_context,
    suggest_memory_format,
)
from .functional import VMAP_RUNNING_STATS, batch_norm, vmap_fold, vmap_unfold


def _channel_view(ndim):
    return (1, -1) + (1,) * (ndim - 2)


def _batch_dims(ndim):
    return (0,) + tuple(range(2, ndim))


def _check_eps(eps, op):
    _checks.check_eps(eps, training=False, op=op, sign=False)   # issue 14: was eps >= 0


def stateless(make_plan, with_bias=True):
    """``forward`` and ``setup_context`` of a Function f(input, <arg>, weight[, bias], eps)
    whose plan depends on its arguments only: ``make_plan(input, arg, eps)``."""
    def split(inputs):
        input, arg, weight, *rest = inputs
        return (input, arg, weight, rest[0] if with_bias else None, rest[-1])

    def forward(*inputs):
        input, arg, weight, bias, eps = split(inputs)
        plan = make_plan(input, arg, eps)
        return norm_outputs(*norm_forward(input, weight, bias, plan), plan)

    def setup_context(ctx, inputs, output):
        input, arg, weight, bias, eps = split(inputs)
        setup_norm_context(ctx, make_plan(input, arg, eps), (input, arg, weight, bias), output,
                           positions=(0, 2, 3))
    return staticmethod(forward), staticmethod(setup_context)


# ----------------------------------------------------------------------------- layer and RMS norm


def trailing_plan(ndim, normalized_shape, eps, center=True):
    """Layer norm (``center``) or RMS norm: statistics over the last len(shape) dims.
    Memory formats as PyTorch's: layer norm's y and dx are contiguous whatever the input's;
    RMS norm (composite in PyTorch) keeps the input's for y and follows dy's for dx."""
    k = len(normalized_shape)
    fmt = dict(memory_format=contiguous_format) if center else dict(
        memory_format=suggest_memory_format, grad_memory_format=lambda x, dy: suggest_memory_format(dy))
    return Plan(tuple(range(ndim - k, ndim)), tuple(normalized_shape), tuple(range(ndim - k)),
                False, eps, center=center,
                stat_fields=("ref", "mean", "invstd") if center else ("invstd",), **fmt)


def _trailing_vmap(function, info, in_dims, input, normalized_shape, weight, bias, eps):
    """vmap of layer/RMS norm: the vmapped dim becomes one more leading dim of the input.
    Batched parameters (one per vmapped sample) are applied after an unweighted call."""
    B, k = info.batch_size, len(normalized_shape)
    xd, wd, bd = in_dims[0], in_dims[2], in_dims[3]
    x = input.unsqueeze(0).expand(B, *input.shape) if xd is None else input.movedim(xd, 0)

    def call(w, b):                               # RMSNormFunction has no bias argument
        extra = (b,) if function is LayerNormFunction else ()
        return function.apply(x, normalized_shape, w, *extra, eps)

    if wd is None and bd is None:
        out = call(weight, bias)
        return out, (0,) * len(out)
    out = call(None, None)

    def view(p, d):                               # (B or 1, *lead as 1s, *normalized_shape)
        p = p.unsqueeze(0) if d is None else p.movedim(d, 0)
        return p.reshape(p.shape[0], *(1,) * (x.ndim - 1 - k), *p.shape[1:])
    y = out[0]
    if weight is not None:
        y = y * view(weight, wd)
    if bias is not None:
        y = y + view(bias, bd)
    return (y,) + tuple(out[1:]), (0,) * len(out)


class LayerNormFunction(torch.autograd.Function):
    """y = w·(x − μ)/sqrt(σ² + ε) + b, statistics of each sample over its trailing
    ``normalized_shape`` dims; w, b have shape ``normalized_shape``.  Returns (y, r, μ, σ̂⁻¹);
    ``vmap``: the vmapped dim is one more leading dim."""

    # forward(input, normalized_shape, weight, bias, eps)
    forward, setup_context = stateless(lambda x, shape, eps: trailing_plan(x.ndim, shape, eps))

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, input, normalized_shape, weight, bias, eps):
        return _trailing_vmap(LayerNormFunction, info, in_dims, input, normalized_shape, weight, bias, eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm``: each sample normalized over its last
    ``len(normalized_shape)`` dims (biased variance)."""
    shape = _checks.check_shape_argument(normalized_shape, "layer_norm")  # issue 14: was int too
    _checks.check_tensor(input, "input")
    _checks.check_trailing_shape(input, shape, weight, bias)
    _check_eps(eps, "layer_norm")
    return LayerNormFunction.apply(input, shape, weight, bias, eps)[0]


class RMSNormFunction(torch.autograd.Function):
    """y = w·x/sqrt(mean(x²) + ε) over the trailing ``normalized_shape`` dims.
    Backward: dx = σ̂⁻¹·(g − x̂·mean(g·x̂)), g = w·dy.  Returns (y, σ̂⁻¹)."""

    # forward(input, normalized_shape, weight, eps)
    forward, setup_context = stateless(
        lambda x, shape, eps: trailing_plan(x.ndim, shape, eps, center=False), with_bias=False)

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, input, normalized_shape, weight, eps):
        return _trailing_vmap(RMSNormFunction, info, in_dims[:3] + (None,), input, normalized_shape,
                              weight, None, eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``torch.nn.functional.rms_norm``; ``eps=None`` is the machine epsilon of the input's
    dtype, as in PyTorch."""
    shape = _checks.check_shape_argument(normalized_shape, "rms_norm")    # issue 14: was int too
    _checks.check_tensor(input, "input")
    # any float weight dtype: PyTorch's composite RMS norm computes with it
    _checks.check_trailing_shape(input, shape, weight, None, pair_dtypes=False)
    eps = torch.finfo(input.dtype).eps if eps is None else eps
    _check_eps(eps, "rms_norm")
    return RMSNormFunction.apply(input, shape, weight, eps)[0]


# ----------------------------------------------------------------------------- group norm


def group_plan(shape, num_groups, eps):
    """Group norm of (N, C, *spatial) viewed as (N, G, C/G·prod(spatial)); y keeps the
    input's memory format (PyTorch)."""
    ndim = len(shape)
    return Plan((2,), _channel_view(ndim), _batch_dims(ndim), False, eps,
                work_shape=(shape[0], num_groups, math.prod(shape[1:]) // num_groups),
                memory_format=suggest_memory_format)


class GroupNormFunction(torch.autograd.Function):
    """Statistics of each (sample, group of C/G consecutive channels) over the group's
    channels and space; per-channel w, b.  Input (N, C, *spatial).  Returns (y, r, μ, σ̂⁻¹),
    statistics of shape (N, G, 1).  ``vmap``: B group norms of G groups are one of B·G
    groups over B·C channels."""

    # forward(input, num_groups, weight, bias, eps)
    forward, setup_context = stateless(lambda x, G, eps: group_plan(x.shape, G, eps))

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, input, num_groups, weight, bias, eps):
        B = info.batch_size
        x = vmap_fold(input, in_dims[0], B, 1)                         # (N, B·C, *S)
        w, b = vmap_fold(weight, in_dims[2], B, 0), vmap_fold(bias, in_dims[3], B, 0)
        out = GroupNormFunction.apply(x, B * num_groups, w, b, eps)
        return vmap_unfold(out, 1, B), (1,) * len(out)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm``."""
    _checks.check_input(input, 2)                   # issue 14: was 2-D to 5-D
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
            _checks.check_dtype_pair(p, name, input.dtype)          # issue 14: was any dtype
    _check_eps(eps, "group_norm")
    _checks.check_values_per_group(input, num_groups)               # issue 14: was zeros
    return GroupNormFunction.apply(input, num_groups, weight, bias, eps)[0]


# ----------------------------------------------------------------------------- instance norm


def instance_plan(ndim, eps):
    """Instance norm: one statistic per (sample, channel) over space; y contiguous (PyTorch)."""
    return Plan(tuple(range(2, ndim)), _channel_view(ndim), _batch_dims(ndim), False, eps,
                memory_format=contiguous_format)


class InstanceNormFunction(torch.autograd.Function):
    """Statistics of each (sample, channel) over space; per-channel w, b.  Given running
    statistics are updated as PyTorch does: with the per-instance means and unbiased
    variances averaged over the batch.  Returns (y, r, μ, σ̂⁻¹), statistics (N, C, 1, ...).
    ``vmap``: the vmapped dim folds into the channels (running statistics as in
    :meth:`bncourse.torch.BatchNormFunction.vmap`)."""

    @staticmethod
    def forward(input, weight, bias, running_mean, running_var, momentum, eps):
        plan = instance_plan(input.ndim, eps)
        y, st = norm_forward(input, weight, bias, plan)
        if running_mean is not None and input.shape[0]:
            m = st.count
            ema_(running_mean, st.mean.mean(0), momentum)
            ema_(running_var, unbiased(st.var, m).mean(0), momentum)
        return norm_outputs(y, st, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):
        setup_norm_context(ctx, instance_plan(inputs[0].ndim, inputs[6]), inputs, output)

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, input, weight, bias, running_mean, running_var, momentum, eps):
        B = info.batch_size
        xd, wd, bd, rmd, rvd = in_dims[:5]
        if running_mean is not None and (rmd is None or rvd is None):
            raise _checks.InputError(VMAP_RUNNING_STATS)
        x = vmap_fold(input, xd, B, 1)                                 # (N, B·C, *S)
        w, b = vmap_fold(weight, wd, B, 0), vmap_fold(bias, bd, B, 0)
        rm, rv = (None if v is None else vmap_fold(v, d, B, 0).clone()
                  for v, d in ((running_mean, rmd), (running_var, rvd)))
        out = InstanceNormFunction.apply(x, w, b, rm, rv, momentum, eps)
        for buf, d, new in ((running_mean, rmd, rm), (running_var, rvd, rv)):
            if buf is not None:
                buf.movedim(d, 0).copy_(new.view(B, -1))
        return vmap_unfold(out, 1, B), (1,) * len(out)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """``torch.nn.functional.instance_norm``.  ``use_input_stats=False`` normalizes with the
    running statistics (batch norm in eval mode)."""
    _checks.check_input(input, 3)                   # issue 14: was 3-D to 5-D
    _checks.check_bool(use_input_stats, "use_input_stats", "instance_norm")   # issue 14
    C = input.shape[1]
    if use_input_stats and math.prod(input.shape[2:]) == 1:
        raise ValueError("Expected more than 1 spatial element when training, got input size "
                         f"{input.size()}")
    _checks.check_running_pair(running_mean, running_var, True)
    if not use_input_stats:
        if running_mean is None:
            raise _checks.InputError("Expected running_mean and running_var to be defined when "
                                     "use_input_stats is false")
        # contiguous: PyTorch's instance norm views (N, C, ...) as (1, N·C, ...), so its y
        # and dx are contiguous whatever the input's memory format
        return batch_norm(input.contiguous(), running_mean, running_var, weight, bias, False,
                          momentum, eps)
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        # issue 14: weight and bias dtypes paired with the input's, running statistics 1-D
        # of any float dtype (PyTorch copies them in and out)
        running = name.startswith("running")
        _checks.check_tensor_channels(v, C, name, input.device, None if running else input.dtype,
                                      vector=running)
    _check_eps(eps, "instance_norm")
    if running_mean is not None:
        _checks.check_momentum(momentum, allow_none=False, bounded=False)   # issue 14: any finite
    return InstanceNormFunction.apply(input, weight, bias, running_mean, running_var, momentum, eps)[0]


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


def renorm_plan(ndim, eps, running_mean, running_std, r_max, d_max):
    return batch_plan(ndim, eps, renorm_statistics(running_mean, running_std, r_max, d_max),
                      stat_fields=("ref", "mean", "invstd", "gain", "offset"))


class BatchRenormFunction(torch.autograd.Function):
    """Batch renormalization, training step (Ioffe 2017, Algorithm 1):

        x̂ = (x − μ_B)/σ_B · r + d,   y = w·x̂ + b,   σ_B = sqrt(σ_B² + ε)  (biased σ_B²),

    r and d (see :func:`renorm_statistics`) held constant in the backward pass; then the
    running *mean* and *std* move towards μ_B and σ_B:  μ ← μ + f·(μ_B − μ),
    σ ← σ + f·(σ_B − σ), f = momentum.  With r_max = 1, d_max = 0 it is batch norm.
    Returns (y, r_ref, μ_B, σ_B⁻¹, r, d).  ``grad``, ``jvp`` and forward-mode AD work;
    ``torch.func.vmap`` is not supported (it raises): the running statistics it updates are
    shared by the vmapped samples.
    """

    @staticmethod
    def forward(input, weight, bias, running_mean, running_std, momentum, eps, r_max, d_max):
        plan = renorm_plan(input.ndim, eps, running_mean, running_std, r_max, d_max)
        y, st = norm_forward(input, weight, bias, plan)
        ema_(running_mean, st.mean, momentum)
        ema_(running_std, 1.0 / st.invstd, momentum)
        return norm_outputs(y, st, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, _, _, running_mean, running_std, _, eps, r_max, d_max = inputs
        setup_norm_context(ctx, renorm_plan(input.ndim, eps, running_mean, running_std, r_max, d_max),
                           inputs, output)

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, *args):
        raise NotImplementedError(
            "bncourse.torch.batch_renorm (BatchRenorm) does not support torch.func.vmap: it "
            "updates running statistics in place in training; vmap a loop of calls instead, or "
            "use batch_norm")


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
    _checks.check_momentum(momentum, allow_none=False)     # no torch counterpart: [0, 1]
    return BatchRenormFunction.apply(input, weight, bias, running_mean, running_std, momentum,
                                     eps, r_max, d_max)[0]


__all__ = ["LayerNormFunction", "layer_norm", "RMSNormFunction", "rms_norm",
           "GroupNormFunction", "group_norm", "InstanceNormFunction", "instance_norm",
           "BatchRenormFunction", "batch_renorm"]
