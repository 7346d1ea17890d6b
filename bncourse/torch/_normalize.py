"""The forward and backward that every normalization Function of ``bncourse.torch`` shares.

Every norm standardizes over some dims and applies an affine map:

    x̂ = (x − μ)·σ̂⁻¹,  σ̂ = sqrt(σ² + ε)  (σ² biased, 1/m),       y = w·x̂ + b,

(RMS norm: x̂ = x·(mean(x²) + ε)^(-1/2)).  A :class:`Plan` says over which dims (of an
optional working view), how the parameters broadcast, and where the statistics come from:
the batch (:func:`batch_statistics`), given running statistics (:func:`frozen_statistics`),
a batch-renorm correction or all processes of a group.

Backward, the closed form (m values per statistic, g = ∂L/∂x̂ = w·dy):

    ∂L/∂x = σ̂⁻¹·(g − mean(g) − x̂·mean(g·x̂))      (RMS norm: without mean(g);
                                                      frozen statistics: σ̂⁻¹·g)
    ∂L/∂w = Σ dy·x̂,   ∂L/∂b = Σ dy     over the dims the parameters are broadcast along.

Both passes work in the compute dtype (float32 for float16/bfloat16) with reductions
accumulated in float64 (:func:`bncourse.torch._stats.sum64`).  When the parameters vary
along the statistics' own index (batch norm) the affine map folds into one per-channel
scale and offset, y = t·s + (b + (r − μ)·s) with t = x − r, so the large common offset
μ is never rounded to the input precision.

Double backward: with ``create_graph=True`` the backward recomputes μ and σ̂ from the
saved input with differentiable float64 operations and evaluates the same closed form on
them, so autograd can differentiate it again.
"""

from dataclasses import dataclass, replace

import torch

from ..core.policy import compute_dtype
from ..core.running import blend, running_stats
from ..core.torch_stats import moments, sum64


@dataclass
class Stats:
    """Statistics one forward normalizes with, keepdim-shaped (one entry per statistic)."""

    count: int            # m, values per statistic (all processes'); None when frozen
    ref: object           # r: the input is shifted by r (compute dtype); None for RMS norm
    mean: object          # μ, float64; None for RMS norm
    var: object           # σ², biased, float64 (RMS norm: the mean square)
    invstd: object        # σ̂⁻¹ = (σ² + ε)^(-1/2), float64
    frozen: bool = False  # given, not functions of x (eval mode): ∂μ/∂x = ∂σ/∂x = 0
    gain: object = None   # batch renorm: x̂ ← x̂·gain + offset, constants (float64)
    offset: object = None


def make_stats(count, ref, mean, var, eps, **kw):
    return Stats(count, ref, mean, var, torch.rsqrt(var + eps), **kw)


def batch_statistics(plan, xw):
    """The input's own statistics over ``plan.dims``: (Stats, t = xw − r)."""
    mo = moments(xw, plan.dims, plan.center)
    var = mo.m2 / max(mo.count, 1)
    return make_stats(mo.count, mo.ref, mo.mean, var, plan.eps), mo.shifted


def frozen_statistics(mean, var):
    """Given per-channel statistics (running mean and variance), as constants."""
    def statistics(plan, xw):
        mean64 = mean.detach().double().reshape(plan.param_view)
        var64 = var.detach().double().reshape(plan.param_view)
        ref = mean64.to(compute_dtype(xw.dtype))
        st = make_stats(None, ref, mean64, var64, plan.eps, frozen=True)
        return st, xw.to(ref.dtype) - ref
    return statistics


@dataclass(eq=False)
class Plan:
    """What a norm standardizes over and how its parameters broadcast."""

    dims: tuple                 # reduced dims (of the working view)
    param_view: tuple           # shape weight/bias are viewed as, to broadcast against x
    param_dims: tuple           # dims of x summed for dweight and dbias
    aligned: bool               # parameters vary exactly along the statistics (batch norm)
    eps: float
    center: bool = True         # False: RMS norm
    work_shape: tuple | None = None    # x is viewed as this while standardizing (group norm)
    statistics: object = batch_statistics   # (plan, xw) -> (Stats, xw − r)
    reduce: object = None       # backward: local (Σdy, Σdy·x̂) -> the group's (distributed)


def batch_plan(ndim, eps, statistics=batch_statistics, reduce=None):
    """Batch norm of (N, C, *spatial): one statistic per channel over (N, *spatial)."""
    dims = (0,) + tuple(range(2, ndim))
    return Plan(dims, (1, -1) + (1,) * (ndim - 2), dims, True, eps,
                statistics=statistics, reduce=reduce)


# ----------------------------------------------------------------------------- forward


def _param(p, plan):
    return None if p is None else p.detach().double().reshape(plan.param_view)


def norm_forward(ctx, x, weight, bias, plan, positions=(0, 1, 2)):
    """y = w·x̂ + b; saves what :func:`function_backward` needs on ``ctx``.  Returns (y, Stats).

    ``positions``: where input, weight and bias stand among the Function's arguments.
    """
    xw = x if plan.work_shape is None else x.reshape(plan.work_shape)
    st, t = plan.statistics(plan, xw)
    cdt = t.dtype
    if plan.aligned:             # fold: y = t·s + (b + (r − μ)·s), s and offset in float64
        w, b = _param(weight, plan), _param(bias, plan)
        scale = st.invstd if w is None else st.invstd * w
        if st.gain is not None:
            scale = scale * st.gain
        shift = (st.ref.double() - st.mean) * scale
        if b is not None:
            shift = shift + b
        if st.offset is not None:
            shift = shift + (st.offset if w is None else w * st.offset)
        y = t.mul_(scale.to(cdt)).add_(shift.to(cdt))          # t is ours: in place
    else:
        assert st.gain is None and not st.frozen
        y = _xhat(t, st, cdt).reshape(x.shape)
        if weight is not None:
            y = y * weight.detach().reshape(plan.param_view).to(cdt)
        if bias is not None:
            y = y + bias.detach().reshape(plan.param_view).to(cdt)
    ctx.plan, ctx.positions = plan, positions
    ctx.meta = (st.count, st.frozen, None if bias is None else (bias.dtype, bias.shape))
    ctx.save_for_backward(x, weight, st.ref, st.mean, st.invstd, st.gain, st.offset)
    return y.to(x.dtype), st


def _xhat(t, st, cdt):
    """x̂ = t·σ̂⁻¹ + (r − μ)·σ̂⁻¹ from t = x − r: every term deviation-sized.  Overwrites t
    when it was shifted (then it is a temporary of ours)."""
    if st.mean is None:                              # RMS norm: t may be the input itself
        return t * st.invstd.to(cdt)
    return t.mul_(st.invstd.to(cdt)).add_(((st.ref.double() - st.mean) * st.invstd).to(cdt))


# ----------------------------------------------------------------------------- backward


def function_backward(ctx, dy):
    """The backward of every Function built on :func:`norm_forward`: the gradients of all
    its arguments, (dx, dweight, dbias) at their positions by the closed form, None
    elsewhere and where ``ctx.needs_input_grad`` is False."""
    x, weight, ref, mean, invstd, gain, offset = ctx.saved_tensors
    plan = ctx.plan
    count, frozen, bias_meta = ctx.meta
    st = Stats(count, ref, mean, None, invstd, frozen, gain, offset)
    needs = [ctx.needs_input_grad[i] for i in ctx.positions]
    need_x, need_w, need_b = needs[0], needs[1] and weight is not None, needs[2] and bias_meta is not None
    inplace = not torch.is_grad_enabled()
    if not inplace:                     # create_graph=True: a differentiable recomputation
        if plan.reduce is not None:
            raise RuntimeError("double backward is not supported across processes "
                               "(bncourse SyncBatchNorm): its reductions are collectives")
        xhat, st = _differentiable_xhat(x, plan, st)
        dy = dy.double()
    else:
        xw = x if plan.work_shape is None else x.reshape(plan.work_shape)
        cdt = compute_dtype(x.dtype)
        t = xw.to(cdt) if ref is None else xw.to(cdt) - ref
        xhat = _xhat(t, st, cdt)
        dy = dy.to(cdt)
    grads = _aligned_grads if plan.aligned else _general_grads
    dx, dw, db = grads(dy, xhat, st, weight, plan, need_x, need_w, need_b, inplace)
    out = [None] * len(ctx.needs_input_grad)
    for i, g, like in zip(ctx.positions, (dx, dw, db), (x, weight, bias_meta)):
        if g is not None:
            dtype, shape = like if isinstance(like, tuple) else (like.dtype, like.shape)
            out[i] = g.reshape(shape).to(dtype)
    return tuple(out)


def _aligned_grads(dy, xhat, st, weight, plan, need_x, need_w, need_b, inplace):
    """Batch norm: per-channel Σdy and Σdy·x̂ give everything."""
    cdt = dy.dtype
    s1 = sum64(dy, plan.dims)                        # Σ dy
    s2 = sum64(dy, plan.dims, xhat)                  # Σ dy·x̂
    db = s1 if need_b else None
    dw = None
    if need_w:                                       # Σ dy·(x̂·gain + offset)
        dw = s2 if st.gain is None else s2 * st.gain + s1 * st.offset
    if not need_x:
        return None, dw, db
    k = st.invstd if weight is None else st.invstd * weight.double().reshape(plan.param_view)
    if st.gain is not None:
        k = k * st.gain                              # r is a constant: ∂x̂'/∂x̂ = r
    if st.frozen:
        return dy * k.to(cdt), dw, db
    if plan.reduce is not None:                      # the whole group's sums
        s1, s2 = plan.reduce(s1, s2)
    p, q, k = (s2 / st.count).to(cdt), (s1 / st.count).to(cdt), k.to(cdt)
    if inplace:                                      # xhat is ours: dx = k·(dy − q − x̂·p)
        return xhat.mul_(-p).add_(dy).sub_(q).mul_(k), dw, db
    return (dy - q - xhat * p) * k, dw, db


def _general_grads(dy, xhat, st, weight, plan, need_x, need_w, need_b, inplace):
    """Statistics and parameters along different dims (layer, group, instance, RMS norm)."""
    cdt = dy.dtype
    dw = sum64(dy, plan.param_dims, xhat.reshape(dy.shape)) if need_w else None
    db = sum64(dy, plan.param_dims) if need_b else None
    dx = None
    if need_x:
        g = dy if weight is None else dy * weight.reshape(plan.param_view).to(cdt)
        g = g if plan.work_shape is None else g.reshape(plan.work_shape)
        m = st.count
        dx = g - xhat * (sum64(g, plan.dims, xhat) / m).to(cdt)
        if plan.center:
            dx = dx - (sum64(g, plan.dims) / m).to(cdt)
        dx = (dx * st.invstd.to(cdt)).reshape(dy.shape)
    return dx, dw, db


def _differentiable_xhat(x, plan, st):
    """x̂ and σ̂⁻¹ recomputed from x in float64 with differentiable ops (double backward)."""
    xw = (x if plan.work_shape is None else x.reshape(plan.work_shape)).double()
    if st.frozen:
        return (xw - st.mean) * st.invstd, st
    if plan.center:
        xc = xw - xw.mean(plan.dims, keepdim=True)
    else:
        xc = xw
    invstd = torch.rsqrt((xc * xc).mean(plan.dims, keepdim=True) + plan.eps)
    return xc * invstd, replace(st, invstd=invstd)


# ----------------------------------------------------------------------------- running statistics


@torch.no_grad()
def ema_(buffer, new, f):
    """In place: buffer ← (1 − f)·buffer + f·new, computed in float64 (f weights the new value)."""
    buffer.copy_(blend(buffer.double(), new.reshape(buffer.shape), f).to(buffer.dtype))


@torch.no_grad()
def update_running_stats_(running_mean, running_var, st, momentum):
    """:func:`bncourse.core.running.running_stats` (PyTorch's rule, f = ``momentum``) written
    into the buffers.  An empty batch leaves them unchanged (as in PyTorch)."""
    if running_mean is None or not st.count:
        return
    mean, var = running_stats(running_mean.double(), running_var.double(),
                              st.mean.reshape(running_mean.shape),
                              st.var.reshape(running_var.shape), st.count, momentum)
    running_mean.copy_(mean.to(running_mean.dtype))
    running_var.copy_(var.to(running_var.dtype))
