"""Closed-form normalization, written once against the array API (NumPy, CuPy, ...).

Every normalization layer in this package is the same two steps:

1. standardize over some axes:  x̂ = (x − μ) / sqrt(σ² + ε),  with the *biased* variance
   σ² = (1/m) Σ (x − μ)²  over the m values that share a statistic;
   RMS norm skips the centering: x̂ = x / sqrt((1/m) Σ x² + ε);
2. an affine map y = γ·x̂ + β with learned parameters broadcast along other axes.

Batch norm standardizes each channel over (N, *spatial); layer norm each sample over its
trailing dimensions; instance norm each (sample, channel) over space; group norm each
(sample, group) over (channels of the group, space) — see ``bncourse.alternatives``.

The backward pass of step 1 has one closed form for all of them (m values per statistic,
ĝ = ∂L/∂x̂, σ̂ = sqrt(σ² + ε)):

    ∂L/∂x = (1/σ̂) · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))

(without the ``mean(ĝ)`` term for RMS norm).  This module computes in float64 whatever the
input dtype and returns the input's dtype: this is the "generic path" — short, exact to
float64 rounding, the same code on NumPy and CuPy, and the yardstick the fast kernels are
tested against.  Inputs are assumed validated (see ``bncourse.functional``).
"""

from dataclasses import dataclass
import math

from .xp import array_namespace


def batch_axes(ndim):
    """Axes a batch-norm statistic is taken over: N and every spatial axis, (0, 2, 3, ...)."""
    return (0,) + tuple(range(2, ndim))


def channel_shape(ndim):
    """(1, C, 1, ...): how a per-channel vector broadcasts along axis 1."""
    return (1, -1) + (1,) * (ndim - 2)


def channel_view(v, ndim, xp):
    return xp.reshape(v, channel_shape(ndim))


def to_float64(a, xp):
    return None if a is None else xp.astype(a, xp.float64)


# ----------------------------------------------------------------------------- standardize


@dataclass
class Standardized:
    """x̂ and its statistics, float64, statistics kept with ``keepdims``."""

    xhat: object     # x̂, same shape as the input
    mean: object     # μ, or None (RMS norm)
    var: object      # biased σ² (RMS norm: the mean square)
    invstd: object   # 1 / sqrt(σ² + ε)
    count: int       # m, values per statistic
    frozen: bool = False   # statistics given (inference), not functions of x


def standardize(x, axes, eps, *, center=True):
    """x̂ = (x − μ)/sqrt(σ² + ε) over ``axes`` by the two-pass formula, in float64.

    ``center=False`` gives RMS normalization, x̂ = x / sqrt(mean(x²) + ε).
    """
    xp = array_namespace(x)
    x64 = xp.astype(x, xp.float64)
    count = math.prod(x.shape[a] for a in axes)
    if center:
        mean = xp.sum(x64, axis=axes, keepdims=True) / count     # pass 1
        xc = x64 - mean
    else:
        mean, xc = None, x64
    var = xp.sum(xc * xc, axis=axes, keepdims=True) / count        # pass 2: biased, 1/m
    invstd = 1.0 / xp.sqrt(var + eps)
    return Standardized(xc * invstd, mean, var, invstd, count)


def standardize_with(x, mean, var, eps):
    """x̂ with *given* statistics (broadcastable to x): the inference-mode transform."""
    xp = array_namespace(x, mean, var)
    invstd = 1.0 / xp.sqrt(to_float64(var, xp) + eps)
    xhat = (xp.astype(x, xp.float64) - to_float64(mean, xp)) * invstd
    return Standardized(xhat, to_float64(mean, xp), to_float64(var, xp), invstd, 1, frozen=True)


def standardize_backward(dxhat, st, axes, *, center=True):
    """∂L/∂x from ĝ = ∂L/∂x̂ (float64): (1/σ̂)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)).

    With frozen statistics x̂ is affine in x and the gradient is just ĝ/σ̂.
    """
    xp = array_namespace(dxhat)
    g = xp.astype(dxhat, xp.float64)
    if st.frozen:
        return g * st.invstd
    proj = xp.sum(g * st.xhat, axis=axes, keepdims=True) / st.count
    dx = g - st.xhat * proj
    if center:
        dx = dx - xp.sum(g, axis=axes, keepdims=True) / st.count
    return dx * st.invstd


# ----------------------------------------------------------------------------- standardize + affine


@dataclass
class NormCache:
    """What :func:`norm_backward` needs from :func:`norm_forward`."""

    st: Standardized
    axes: tuple            # axes the statistic was taken over (in the working shape)
    center: bool
    weight: object         # None or the weight array
    bias_dtype: object     # None or the bias dtype
    shape: tuple           # input shape
    dtype: object          # input dtype
    work_shape: tuple      # shape during standardization (group norm reshapes)
    param_view: tuple      # shape the parameters broadcast from
    param_axes: tuple      # axes summed for dweight / dbias
    gain: object = None    # batch renorm corrects x̂ to x̂·gain + offset (constants)
    offset: object = None

    def affine_input(self):
        """The x̂ that the weight multiplies, float64, in the input's shape."""
        xp = array_namespace(self.st.xhat)
        xhat = self.st.xhat
        if self.gain is not None:
            xhat = xhat * self.gain + self.offset
        return xp.reshape(xhat, self.shape)

    # Per-channel batch statistics, float64, (C,): what the batch-norm layer reads.
    @property
    def mean(self):
        return self._flat(self.st.mean)

    @property
    def var(self):
        """Biased variance (1/m), the one used to normalize."""
        return self._flat(self.st.var)

    @property
    def count(self):
        return self.st.count

    def _flat(self, a):
        return array_namespace(a).reshape(a, (-1,))


def norm_forward(x, axes, eps, weight, bias, param_view, param_axes, *, center=True,
                 work_shape=None, correct=None, stats=None):
    """Standardize x (reshaped to ``work_shape``) over ``axes``, optionally correct x̂ by
    ``correct(st) -> (gain, offset)``, then y = weight·x̂ + bias with the parameters
    broadcast from ``param_view``.  ``stats=(mean, var)`` (broadcastable) freezes the
    statistics.  Returns (y in x's dtype, cache)."""
    xp = array_namespace(x, weight, bias)
    xw = x if work_shape is None else xp.reshape(x, work_shape)
    st = standardize(xw, axes, eps, center=center) if stats is None else standardize_with(xw, *stats, eps)
    gain, offset = (None, None) if correct is None else correct(st)
    cache = NormCache(st, axes, center, weight, None if bias is None else bias.dtype,
                      tuple(x.shape), x.dtype, tuple(xw.shape), param_view, param_axes,
                      gain, offset)
    y = cache.affine_input()
    if weight is not None:
        y = y * xp.reshape(to_float64(weight, xp), param_view)
    if bias is not None:
        y = y + xp.reshape(to_float64(bias, xp), param_view)
    return xp.astype(y, x.dtype), cache


def norm_backward(dy, cache):
    """(dx, dweight, dbias) for :func:`norm_forward`; None for absent parameters."""
    xp = array_namespace(dy)
    g = xp.astype(dy, xp.float64)
    dweight = dbias = None
    g_hat = g
    if cache.weight is not None:
        dweight = xp.sum(g * cache.affine_input(), axis=cache.param_axes)
        dweight = xp.astype(xp.reshape(dweight, cache.weight.shape), cache.weight.dtype)
        g_hat = g * xp.reshape(to_float64(cache.weight, xp), cache.param_view)
    if cache.bias_dtype is not None:
        dbias = xp.astype(xp.sum(g, axis=cache.param_axes), cache.bias_dtype)
        if cache.weight is not None:
            dbias = xp.reshape(dbias, cache.weight.shape)
    g_hat = xp.reshape(g_hat, cache.work_shape)
    if cache.gain is not None:         # the correction's r is a constant: ∂/∂x̂ = r
        g_hat = g_hat * cache.gain
    dx = standardize_backward(g_hat, cache.st, cache.axes, center=cache.center)
    return xp.astype(xp.reshape(dx, cache.shape), cache.dtype), dweight, dbias


# ----------------------------------------------------------------------------- batch norm


def batch_norm_forward(x, gamma, beta, eps):
    """Training-mode batch norm: y = γ·x̂ + β with batch statistics over (N, *spatial).

    x: (N, C, *spatial), 2-D to 5-D; gamma, beta: (C,) or None.  Returns (y, cache); the
    cache's ``mean``/``var`` are the batch's per-channel mean and biased variance.
    """
    axes = batch_axes(x.ndim)
    return norm_forward(x, axes, eps, gamma, beta, channel_shape(x.ndim), axes)


def batch_norm_inference(x, mean, var, gamma, beta, eps):
    """Eval-mode batch norm with given per-channel statistics (the running ones):
    y = γ·(x − μ)/sqrt(σ² + ε) + β.  Returns (y, cache) — the cache serves frozen-BN
    fine-tuning, whose backward treats μ, σ² as constants."""
    xp = array_namespace(x, mean, var)
    axes = batch_axes(x.ndim)
    stats = (channel_view(mean, x.ndim, xp), channel_view(var, x.ndim, xp))
    return norm_forward(x, axes, eps, gamma, beta, channel_shape(x.ndim), axes, stats=stats)


batch_norm_backward = norm_backward
