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
accumulated in float64 (:func:`bncourse.core.torch_stats.sum64`).  When the parameters vary
along the statistics' own index (batch norm) the affine map folds into one per-channel
scale and offset, y = t·s + (b + (r − μ)·s) with t = x − r, so the large common offset
μ is never rounded to the input precision.

Double backward: with ``create_graph=True`` the backward recomputes μ and σ̂ from the
saved input with differentiable float64 operations and evaluates the same closed form on
them, so autograd can differentiate it again.

Forward mode (:func:`function_jvp`), the same projection applied to a tangent dx:

    dx̂ = σ̂⁻¹·(dx − mean(dx) − x̂·mean(dx·x̂)),     dy = w·dx̂ + dw·x̂ + db.

``torch.func``: the Functions use the ``setup_context`` style.  ``forward`` returns
(y, *statistics) (r, μ, σ̂⁻¹, ...: the non-differentiable outputs that backward and jvp
read, since ``torch.func`` can save only inputs and outputs); the public functions return
y.  In-place arithmetic is used only on tensors that no transform wraps (a vmapped dy
against an unbatched saved x cannot be written into).
"""

from dataclasses import dataclass, replace
import math

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
    frozen: bool = False        # statistics are given constants (eval mode)
    stat_fields: tuple = ("ref", "mean", "invstd")   # Stats the Function returns after y
    memory_format: object = None    # x -> the memory format of y (None: whatever it is)
    grad_memory_format: object = None   # (x, dy) -> that of dx (None: memory_format(x))


def batch_plan(ndim, eps, statistics=batch_statistics, reduce=None, **kw):
    """Batch norm of (N, C, *spatial): one statistic per channel over (N, *spatial);
    y keeps the input's memory format (channels_last in, channels_last out: PyTorch)."""
    dims = (0,) + tuple(range(2, ndim))
    return Plan(dims, (1, -1) + (1,) * (ndim - 2), dims, True, eps,
                statistics=statistics, reduce=reduce, memory_format=suggest_memory_format, **kw)


def suggest_memory_format(x):
    """channels_last (4-D) or channels_last_3d (5-D) when x is strided so, else contiguous."""
    for ndim, fmt in ((4, torch.channels_last), (5, torch.channels_last_3d)):
        if x.ndim == ndim and x.is_contiguous(memory_format=fmt) and not x.is_contiguous():
            return fmt
    return torch.contiguous_format


def contiguous_format(x):
    return torch.contiguous_format


# ----------------------------------------------------------------------------- forward


def _param(p, plan):
    return None if p is None else p.detach().double().reshape(plan.param_view)


def norm_forward(x, weight, bias, plan):
    """y = w·x̂ + b.  Returns (y, Stats); :func:`norm_outputs` makes the Function's outputs."""
    xw = x if plan.work_shape is None else x.reshape(plan.work_shape)
    st, t = plan.statistics(plan, xw)
    if t is xw and st.mean is not None:   # an empty batch norm batch: t is the input itself
        t = t.clone()
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
    y = y.to(x.dtype)
    if plan.memory_format is not None:
        y = y.contiguous(memory_format=plan.memory_format(x))
    return y, st


def norm_outputs(y, st, plan):
    """The Function's outputs: (y, *the statistics named by ``plan.stat_fields``)."""
    return (y,) + tuple(getattr(st, f) for f in plan.stat_fields)


def setup_norm_context(ctx, plan, inputs, outputs, positions=(0, 1, 2), count=None):
    """``setup_context`` of every Function built on :func:`norm_forward`: saves the input,
    the weight and the statistics (outputs[1:], non-differentiable) for backward and jvp.
    ``positions``: where input, weight and bias stand among the Function's arguments;
    ``count``: values per statistic when the input's shape does not tell (distributed)."""
    x, weight, bias = (inputs[i] for i in positions)
    if count is None:
        shape = x.shape if plan.work_shape is None else plan.work_shape
        count = None if plan.frozen else math.prod(shape[d] for d in plan.dims)
    ctx.plan, ctx.positions = plan, positions
    ctx.meta = (count, plan.frozen, None if bias is None else (bias.dtype, bias.shape))
    ctx.mark_non_differentiable(*outputs[1:])
    ctx.save_for_backward(x, weight, *outputs[1:])
    ctx.save_for_forward(x, weight, *outputs[1:])


def _saved_stats(ctx, saved):
    """(x, weight, Stats) from the tensors :func:`setup_norm_context` saved."""
    x, weight, *stats = saved
    count, frozen, _ = ctx.meta
    fields = dict(zip(ctx.plan.stat_fields, stats))
    st = Stats(count, fields.get("ref"), fields.get("mean"), None, fields["invstd"], frozen,
               fields.get("gain"), fields.get("offset"))
    return x, weight, st


def plain(*tensors):
    """True when no ``torch.func`` transform (or legacy vmap) wraps any of ``tensors``: then
    in-place arithmetic on temporaries derived from them is safe."""
    f = torch._C._functorch
    return not any(t is not None and (f.is_functorch_wrapped_tensor(t) or f.is_legacy_batchedtensor(t))
                   for t in tensors)


def _xhat(t, st, cdt):
    """x̂ = t·σ̂⁻¹ + (r − μ)·σ̂⁻¹ from t = x − r: every term deviation-sized.  Overwrites t
    when it was shifted (then it is a temporary of ours)."""
    if st.mean is None:                              # RMS norm: t may be the input itself
        return t * st.invstd.to(cdt)
    return t.mul_(st.invstd.to(cdt)).add_(((st.ref.double() - st.mean) * st.invstd).to(cdt))


# ----------------------------------------------------------------------------- backward


def function_backward(ctx, dy, *_):
    """The backward of every Function built on :func:`norm_forward`: the gradients of all
    its arguments, (dx, dweight, dbias) at their positions by the closed form, None
    elsewhere and where ``ctx.needs_input_grad`` is False.  The statistics outputs are not
    differentiable: their gradients (``_``) are ignored."""
    x, weight, st = _saved_stats(ctx, ctx.saved_tensors)
    ref = st.ref
    plan = ctx.plan
    bias_meta = ctx.meta[2]
    needs = [ctx.needs_input_grad[i] for i in ctx.positions]
    need_x, need_w, need_b = needs[0], needs[1] and weight is not None, needs[2] and bias_meta is not None
    differentiable = torch.is_grad_enabled()
    dx_format = None                        # dx's memory format, PyTorch's (see Plan)
    if plan.grad_memory_format is not None:
        dx_format = plan.grad_memory_format(x, dy)
    elif plan.memory_format is not None:
        dx_format = plan.memory_format(x)
    inplace = not differentiable and plain(dy, x, weight, *ctx.saved_tensors[2:])
    if differentiable:                     # create_graph=True: a differentiable recomputation
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
    if out[ctx.positions[0]] is not None and dx_format is not None:
        out[ctx.positions[0]] = out[ctx.positions[0]].contiguous(memory_format=dx_format)
    return tuple(out)


def function_jvp(ctx, *tangents):
    """Forward mode of every Function built on :func:`norm_forward` (module docstring):
    the tangent of y from those of input, weight and bias (None: zero); the statistics
    outputs get None.  Out of place throughout (``jacfwd`` vmaps over the tangents)."""
    x, weight, st = _saved_stats(ctx, ctx.saved_tensors)
    plan = ctx.plan
    if plan.reduce is not None:
        raise NotImplementedError("forward-mode AD is not supported across processes "
                                  "(bncourse SyncBatchNorm): its reductions are collectives")
    dx, dw, db = (tangents[i] for i in ctx.positions)
    cdt = compute_dtype(x.dtype)
    xw = x if plan.work_shape is None else x.reshape(plan.work_shape)
    t = xw.to(cdt) if st.ref is None else xw.to(cdt) - st.ref
    xhat = t * st.invstd.to(cdt)
    if st.mean is not None:
        xhat = xhat + ((st.ref.double() - st.mean) * st.invstd).to(cdt)
    dy = None
    if dx is not None:
        dxw = (dx if plan.work_shape is None else dx.reshape(plan.work_shape)).to(cdt)
        if not st.frozen:
            m = st.count                             # both means from the given dx
            p = (sum64(dxw, plan.dims, xhat) / m).to(cdt)
            q = (sum64(dxw, plan.dims) / m).to(cdt) if plan.center else None
            dxw = dxw - xhat * p if q is None else dxw - q - xhat * p
        k = st.invstd if st.gain is None else st.invstd * st.gain
        dy = (dxw * k.to(cdt)).reshape(x.shape)
        if weight is not None:
            dy = dy * weight.reshape(plan.param_view).to(cdt)
    if dw is not None:
        xh = xhat if st.gain is None else xhat * st.gain.to(cdt) + st.offset.to(cdt)
        term = xh.reshape(x.shape) * dw.reshape(plan.param_view).to(cdt)
        dy = term if dy is None else dy + term
    if db is not None:
        term = db.reshape(plan.param_view).to(cdt).expand(x.shape)
        dy = term if dy is None else dy + term
    if dy is None:
        dy = torch.zeros_like(x)
    dy = dy.to(x.dtype)
    if plan.memory_format is not None:
        dy = dy.contiguous(memory_format=plan.memory_format(x))
    return (dy,) + (None,) * len(plan.stat_fields)


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
