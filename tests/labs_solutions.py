"""Learner-style implementations for the labs tests, written independently of
bncourse.course.labs: correct ones in several styles, and each catalogued mistake in a
NumPy vectorized and an explicit-loop style (torch styles live in test_labs_torch.py).

``mistake=`` selects the mistake a function makes (None: correct), the way a test writes
many small variants; nothing here calls into bncourse.
"""

from functools import partial
import math

import numpy as np


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _view(v, x):
    return np.reshape(v, (1, -1) + (1,) * (x.ndim - 2))


# ----------------------------------------------------------------------------- forward


def fwd_np(x, gamma, beta, eps, mistake=None):
    axes = tuple(range(1, x.ndim)) if mistake == "wrong_axes" else _axes(x)
    mu = np.mean(x, axis=axes, keepdims=True)
    var = np.var(x, axis=axes, keepdims=True, ddof=1 if mistake == "unbiased_variance" else 0)
    if mistake == "eps_outside_sqrt":
        xhat = (x - mu) / (np.sqrt(var) + eps)
    elif mistake == "missing_eps":
        xhat = (x - mu) / np.sqrt(var)
    elif mistake == "divide_by_variance":
        xhat = (x - mu) / (var + eps)
    else:
        xhat = (x - mu) / np.sqrt(var + eps)
    if mistake == "gamma_beta_swapped":
        return _view(beta, x) * xhat + _view(gamma, x)
    if mistake == "missing_affine":
        return xhat
    return _view(gamma, x) * xhat + _view(beta, x)


def fwd_loops(x, gamma, beta, eps, mistake=None):
    """One channel at a time, with Python sums; wrong_axes: statistics over axis 0 only."""
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        xc = x[:, c]                                             # (N, *spatial)
        groups = ([xc[(slice(None),) + i] for i in np.ndindex(xc.shape[1:])]
                  if mistake == "wrong_axes" else [xc])
        out = y[:, c]
        for k, g in enumerate(groups):
            vals = list(g.ravel())
            m = len(vals)
            mu = sum(vals) / m
            ss = sum((v - mu) ** 2 for v in vals)
            var = ss / (m - 1) if mistake == "unbiased_variance" else ss / m
            den = {"eps_outside_sqrt": math.sqrt(var) + eps, "missing_eps": math.sqrt(var),
                   "divide_by_variance": var + eps}.get(mistake, math.sqrt(var + eps))
            scale, shift = gamma[c], beta[c]
            if mistake == "gamma_beta_swapped":
                scale, shift = shift, scale
            elif mistake == "missing_affine":
                scale, shift = 1.0, 0.0
            res = scale * (g - mu) / den + shift
            if mistake == "wrong_axes":
                out[(slice(None),) + list(np.ndindex(xc.shape[1:]))[k]] = res
            else:
                out[...] = res
    return y


def fwd_einsum(x, gamma, beta, eps):
    x3 = x.reshape(x.shape[0], x.shape[1], -1)                   # (N, C, L)
    m = x3.shape[0] * x3.shape[2]
    mu = np.einsum("ncl->c", x3) / m
    d = x3 - mu[None, :, None]
    var = np.einsum("ncl,ncl->c", d, d) / m
    return (np.einsum("ncl,c->ncl", d, gamma / np.sqrt(var + eps)) + beta[None, :, None]).reshape(x.shape)


def fwd_inplace(x, gamma, beta, eps):
    """Correct, but overwrites its input (the checker passes copies)."""
    axes = _axes(x)
    x -= x.mean(axis=axes, keepdims=True)
    x /= np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    x *= _view(gamma, x)
    x += _view(beta, x)
    return x


# ----------------------------------------------------------------------------- backward


def bwd_np(dy, x, gamma, eps, mistake=None):
    axes = tuple(range(1, x.ndim)) if mistake == "wrong_axes" else _axes(x)
    m = math.prod(x.shape[a] for a in axes)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).sum(axis=axes, keepdims=True) / (m - 1 if mistake == "unbiased_variance" else m)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    dbeta = dy.sum(axis=_axes(x))
    dgamma = dbeta if mistake == "dgamma_missing_xhat" else (dy * xhat).sum(axis=_axes(x))
    if mistake == "params_averaged":
        dgamma, dbeta = dgamma / (x.size / x.shape[1]), dbeta / (x.size / x.shape[1])
    g = dy * _view(gamma, x)
    if mistake == "stats_treated_constant":
        return g * inv, dgamma, dbeta
    mean_g = 0 if mistake == "missing_mean_term" else g.mean(axis=axes, keepdims=True)
    proj = 0 if mistake == "missing_xhat_term" else xhat * (g * xhat).mean(axis=axes, keepdims=True)
    return inv * (g - mean_g - proj), dgamma, dbeta


def bwd_loops(dy, x, gamma, eps, mistake=None):
    """The staged graph, one channel at a time (dvar and dmu as in the paper's appendix)."""
    dx, dgamma, dbeta = np.empty_like(x), np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        if mistake == "wrong_axes":       # one statistic per (c, spatial position)
            idx = [(slice(None), c) + i for i in np.ndindex(x.shape[2:])]
        else:
            idx = [(slice(None), c)]
        for i in idx:
            xc, g = x[i], dy[i] * gamma[c]
            m = xc.size
            mu = xc.sum() / m
            var = ((xc - mu) ** 2).sum() / (m - 1 if mistake == "unbiased_variance" else m)
            std = math.sqrt(var + eps)
            dxhat = g
            dvar = 0.0 if mistake in ("stats_treated_constant", "missing_xhat_term") else \
                (dxhat * (xc - mu)).sum() * -0.5 * std ** -3
            dmu = 0.0 if mistake in ("stats_treated_constant", "missing_mean_term") else -dxhat.sum() / std
            # dvar/dx written with 2/m (the learner keeps m even with the unbiased variance)
            dx[i] = dxhat / std + dvar * 2 * (xc - mu) / m + dmu / m
        xc_all = x[:, c]
        mu = xc_all.mean()
        n = xc_all.size
        var = ((xc_all - mu) ** 2).sum() / (n - 1 if mistake == "unbiased_variance" else n)
        if mistake == "wrong_axes":
            xhat_all = (xc_all - xc_all.mean(axis=0)) / np.sqrt(xc_all.var(axis=0) + eps)
        else:
            xhat_all = (xc_all - mu) / math.sqrt(var + eps)
        dbeta[c] = dy[:, c].sum()
        dgamma[c] = dbeta[c] if mistake == "dgamma_missing_xhat" else (dy[:, c] * xhat_all).sum()
        if mistake == "params_averaged":
            dbeta[c], dgamma[c] = dy[:, c].mean(), (dy[:, c] * xhat_all).mean()
    return dx, dgamma, dbeta


def bwd_einsum(dy, x, gamma, eps):
    x3, d3 = x.reshape(x.shape[0], x.shape[1], -1), dy.reshape(x.shape[0], x.shape[1], -1)
    m = x3.shape[0] * x3.shape[2]
    mu = np.einsum("ncl->c", x3) / m
    xc = x3 - mu[None, :, None]
    inv = 1 / np.sqrt(np.einsum("ncl,ncl->c", xc, xc) / m + eps)
    xhat = xc * inv[None, :, None]
    dbeta = np.einsum("ncl->c", d3)
    dgamma = np.einsum("ncl,ncl->c", d3, xhat)
    dx = (gamma * inv / m)[None, :, None] * (m * d3 - dbeta[None, :, None] - xhat * dgamma[None, :, None])
    return dx.reshape(x.shape), dgamma, dbeta


# ----------------------------------------------------------------------------- running stats


def run_np(running_mean, running_var, x, momentum, mistake=None):
    axes = _axes(x)
    mu = x.mean(axis=axes)
    var = x.var(axis=axes, ddof=0 if mistake == "biased_running_var" else 1)
    f = 1 - momentum if mistake == "momentum_inverted" else momentum
    return (1 - f) * running_mean + f * mu, (1 - f) * running_var + f * var


def run_loops(running_mean, running_var, x, momentum, mistake=None):
    new_m, new_v = [], []
    for c in range(x.shape[1]):
        vals = list(x[:, c].ravel())
        m = len(vals)
        mu = sum(vals) / m
        var = sum((v - mu) ** 2 for v in vals) / (m if mistake == "biased_running_var" else m - 1)
        if mistake == "momentum_inverted":
            new_m.append(momentum * running_mean[c] + (1 - momentum) * mu)
            new_v.append(momentum * running_var[c] + (1 - momentum) * var)
        else:
            new_m.append(running_mean[c] + momentum * (mu - running_mean[c]))
            new_v.append(running_var[c] + momentum * (var - running_var[c]))
    return np.array(new_m), np.array(new_v)


# ----------------------------------------------------------------------------- inference


def inf_np(x, running_mean, running_var, gamma, beta, eps, mistake=None):
    mu, var = _view(running_mean, x), _view(running_var, x)
    if mistake == "uses_batch_stats":
        mu, var = x.mean(axis=_axes(x), keepdims=True), x.var(axis=_axes(x), keepdims=True)
    den = {"eps_outside_sqrt": np.sqrt(var) + eps, "missing_eps": np.sqrt(var),
           "divide_by_variance": var + eps}.get(mistake, np.sqrt(var + eps))
    if mistake == "gamma_beta_swapped":
        gamma, beta = beta, gamma
    return _view(gamma, x) * (x - mu) / den + _view(beta, x)


def inf_loops(x, running_mean, running_var, gamma, beta, eps, mistake=None):
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        mu, var = running_mean[c], running_var[c]
        if mistake == "uses_batch_stats":      # unbiased this time: still the batch's statistics
            mu, var = x[:, c].mean(), x[:, c].var(ddof=1)
        if mistake == "eps_outside_sqrt":
            den = math.sqrt(var) + eps
        elif mistake == "missing_eps":
            den = math.sqrt(var)
        elif mistake == "divide_by_variance":
            den = var + eps
        else:
            den = math.sqrt(var + eps)
        g, b = (beta[c], gamma[c]) if mistake == "gamma_beta_swapped" else (gamma[c], beta[c])
        scale = g / den
        y[:, c] = scale * x[:, c] + (b - scale * mu)
    return y


# ----------------------------------------------------------------------------- layer norm


def ln_np(x, gamma, beta, eps, mistake=None):
    axes = {"wrong_axes": (0,)}.get(mistake, tuple(range(1, x.ndim)))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=1 if mistake == "unbiased_variance" else 0)
    den = {"eps_outside_sqrt": np.sqrt(var) + eps, "missing_eps": np.sqrt(var),
           "divide_by_variance": var + eps}.get(mistake, np.sqrt(var + eps))
    if mistake == "gamma_beta_swapped":
        gamma, beta = beta, gamma
    if mistake == "missing_affine":
        return (x - mu) / den
    return gamma * (x - mu) / den + beta


def ln_loops(x, gamma, beta, eps, mistake=None):
    """One sample at a time; wrong_axes: normalizes over the last axis only."""
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        xs = x[n]
        if mistake == "wrong_axes":
            mu, var = xs.mean(axis=-1, keepdims=True), xs.var(axis=-1, keepdims=True)
        else:
            m = xs.size
            mu = xs.sum() / m
            var = ((xs - mu) ** 2).sum() / (m - 1 if mistake == "unbiased_variance" else m)
        if mistake == "eps_outside_sqrt":
            xhat = (xs - mu) / (np.sqrt(var) + eps)
        elif mistake == "missing_eps":
            xhat = (xs - mu) / np.sqrt(var)
        elif mistake == "divide_by_variance":
            xhat = (xs - mu) / (var + eps)
        else:
            xhat = (xs - mu) / np.sqrt(var + eps)
        if mistake == "gamma_beta_swapped":
            y[n] = beta * xhat + gamma
        elif mistake == "missing_affine":
            y[n] = xhat
        else:
            y[n] = gamma * xhat + beta
    return y


# ----------------------------------------------------------------------------- group norm


def gn_np(x, num_groups, gamma, beta, eps, mistake=None):
    N, C = x.shape[:2]
    if mistake == "groups_interleaved":
        xg = x.reshape(N, C // num_groups, num_groups, -1).transpose(0, 2, 1, 3).reshape(N, num_groups, -1)
    elif mistake == "wrong_axes":            # per sample, all channels together
        xg = x.reshape(N, 1, -1)
    else:
        xg = x.reshape(N, num_groups, -1)
    mu = xg.mean(axis=-1, keepdims=True)
    var = xg.var(axis=-1, keepdims=True, ddof=1 if mistake == "unbiased_variance" else 0)
    den = {"eps_outside_sqrt": np.sqrt(var) + eps, "missing_eps": np.sqrt(var),
           "divide_by_variance": var + eps}.get(mistake, np.sqrt(var + eps))
    xhat = (xg - mu) / den
    if mistake == "groups_interleaved":
        xhat = xhat.reshape(N, num_groups, C // num_groups, -1).transpose(0, 2, 1, 3)
    if mistake == "missing_affine":
        return xhat.reshape(x.shape)
    return _view(gamma, x) * xhat.reshape(x.shape) + _view(beta, x)


def gn_loops(x, num_groups, gamma, beta, eps, mistake=None):
    """One (sample, group) at a time; wrong_axes: one (sample, channel) at a time."""
    N, C = x.shape[:2]
    size = C // num_groups
    y = np.empty_like(x)
    for n in range(N):
        if mistake == "groups_interleaved":
            groups = [list(range(g, C, num_groups)) for g in range(num_groups)]
        elif mistake == "wrong_axes":
            groups = [[c] for c in range(C)]
        else:
            groups = [list(range(g * size, (g + 1) * size)) for g in range(num_groups)]
        for chans in groups:
            v = x[n, chans]
            m = v.size
            mu = v.sum() / m
            var = ((v - mu) ** 2).sum() / (m - 1 if mistake == "unbiased_variance" else m)
            den = {"eps_outside_sqrt": math.sqrt(var) + eps, "missing_eps": math.sqrt(var),
                   "divide_by_variance": var + eps}.get(mistake, math.sqrt(var + eps))
            for j, c in enumerate(chans):
                scale, shift = (1.0, 0.0) if mistake == "missing_affine" else (gamma[c], beta[c])
                y[n, c] = scale * (v[j] - mu) / den + shift
    return y


# ----------------------------------------------------------------------------- folding


def fold_np(W, b, gamma, beta, running_mean, running_var, eps, mistake=None):
    den = {"eps_outside_sqrt": np.sqrt(running_var) + eps, "missing_eps": np.sqrt(running_var),
           "divide_by_variance": running_var + eps}.get(mistake, np.sqrt(running_var + eps))
    s = gamma / den
    bias = np.zeros_like(beta) if (b is None or mistake == "missing_bias") else b
    if mistake == "bias_not_scaled":
        return W * s[:, None], bias + beta - s * running_mean
    return W * s[:, None], s * (bias - running_mean) + beta


def fold_loops(W, b, gamma, beta, running_mean, running_var, eps, mistake=None):
    W2, b2 = np.empty_like(W), np.empty(W.shape[0])
    for o in range(W.shape[0]):
        var = running_var[o]
        den = {"eps_outside_sqrt": math.sqrt(var) + eps, "missing_eps": math.sqrt(var),
               "divide_by_variance": var + eps}.get(mistake, math.sqrt(var + eps))
        s = gamma[o] / den
        for i in range(W.shape[1]):
            W2[o, i] = s * W[o, i]
        bo = 0.0 if b is None else float(b[o])
        if mistake == "missing_bias":
            b2[o] = beta[o] - s * running_mean[o]
        elif mistake == "bias_not_scaled":
            b2[o] = bo + beta[o] - s * running_mean[o]
        else:
            b2[o] = beta[o] + s * (bo - running_mean[o])
    return W2, b2


# ----------------------------------------------------------------------------- merge


def merge_np(n_a, mean_a, m2_a, n_b, mean_b, m2_b, mistake=None):
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = (mean_a + mean_b) / 2 if mistake == "unweighted_mean" else (n_a * mean_a + n_b * mean_b) / n
    extra = {"naive_m2": 0.0, "m2_delta_unscaled": delta ** 2}.get(mistake, delta ** 2 * n_a * n_b / n)
    return n, mean, m2_a + m2_b + extra


def merge_loops(n_a, mean_a, m2_a, n_b, mean_b, m2_b, mistake=None):
    n = n_a + n_b
    means, m2s = [], []
    for c in range(len(mean_a)):
        d = mean_b[c] - mean_a[c]
        means.append(0.5 * (mean_a[c] + mean_b[c]) if mistake == "unweighted_mean"
                     else mean_a[c] + d * n_b / n)
        if mistake == "naive_m2":
            m2s.append(m2_a[c] + m2_b[c])
        elif mistake == "m2_delta_unscaled":
            m2s.append(m2_a[c] + m2_b[c] + d * d)
        else:
            m2s.append(m2_a[c] + m2_b[c] + d * d * n_a * n_b / n)
    return n, np.array(means), np.array(m2s)


# ----------------------------------------------------------------------------- tables

STYLES = {   # checker -> (vectorized, loops), each taking mistake=
    "check_batch_norm_forward": (fwd_np, fwd_loops),
    "check_batch_norm_backward": (bwd_np, bwd_loops),
    "check_running_stats": (run_np, run_loops),
    "check_batch_norm_inference": (inf_np, inf_loops),
    "check_layer_norm_forward": (ln_np, ln_loops),
    "check_group_norm_forward": (gn_np, gn_loops),
    "check_fold": (fold_np, fold_loops),
    "check_merge": (merge_np, merge_loops),
}

CORRECT = {   # checker -> correct implementations in NumPy styles (torch ones: test_labs_torch.py)
    "check_batch_norm_forward": [fwd_np, fwd_loops, fwd_einsum, fwd_inplace],
    "check_batch_norm_backward": [bwd_np, bwd_loops, bwd_einsum],
    **{k: list(v) for k, v in STYLES.items()
       if k not in ("check_batch_norm_forward", "check_batch_norm_backward")},
}


def with_mistake(fn, mistake):
    return partial(fn, mistake=mistake)
