"""The catalogue of mistakes, written once: one reference-with-switches function per checker.

With default switches each function computes the correct answer (the tests check it against
the package's public reference on every probe); each catalogued mistake is a set of switches,
e.g. ``_bn_forward(..., ddof=1)`` is ``unbiased_variance``.  Also here: the seeded probes
(smallest first) and the :class:`~bncourse.course.labs.result.Spec` of every checker.
"""

from functools import partial
import math
from typing import Any

import numpy as np

from ... import numpy as bnp
from ...core import running
from ...core.moments import Moments
from ..stats import merge as chan_merge
from .result import Output, Probe, Spec

# ----------------------------------------------------------------------------- shared pieces

AXES = {                                  # the axes statistics are taken over, by rule
    "batch": lambda nd: (0, *range(2, nd)),            # batch norm: all but channels (axis 1)
    "sample": lambda nd: tuple(range(1, nd)),          # per sample (layer norm)
    "first": lambda nd: (0,),                          # axis 0 only (per feature position)
    "spatial": lambda nd: tuple(range(2, nd)),         # per (sample, channel): instance norm
    "all": lambda nd: tuple(range(nd)),                # one statistic for the whole tensor
    "channels_last": lambda nd: tuple(range(nd - 1)),  # NHWC habit: all but the last axis
    "last": lambda nd: (nd - 1,),                      # the last axis only
}


def _chan(v: Any, ndim: int) -> Any:
    """A (C,) vector viewed to broadcast over axis 1 of an ndim-D array."""
    return np.reshape(v, (1, -1) + (1,) * (ndim - 2))


def _denominator(var: Any, eps: float, eps_mode: str) -> Any:
    """What x − μ is divided by: sqrt(var + eps) (correct) or a catalogued mistake."""
    return {"inside": lambda: np.sqrt(var + eps), "outside": lambda: np.sqrt(var) + eps,
            "none": lambda: np.sqrt(var), "variance": lambda: var + eps}[eps_mode]()


def _normalize(x: Any, axes: tuple[int, ...], eps: float, *, ddof: int = 0,
               eps_mode: str = "inside") -> Any:
    """(x − μ) / sqrt(σ² + eps) over ``axes``, σ² with ``ddof`` (0: biased, correct)."""
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    return (x - mean) / _denominator(var, eps, eps_mode)


def _variants(fn: Any, **catalogue: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """mistake id → [fn with those switches, ...]."""
    return {k: [partial(fn, **kw) for kw in kws] for k, kws in catalogue.items()}


def _channels(rng: np.random.Generator, shape: tuple[int, ...], stds: list[float]) -> Any:
    """Seeded data with a distinct mean and the given spread per channel (axis 1)."""
    C = shape[1]
    mean = rng.uniform(-2, 2, C)
    return _chan(mean, len(shape)) + _chan(np.asarray(stds[:C]), len(shape)) * rng.standard_normal(shape)


def _affine(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """gamma, beta: clearly different from each other, from 1 and from 0."""
    return rng.uniform(0.5, 2.0, shape), rng.uniform(-1.5, 1.5, shape)


def _label(x: Any, **kw: Any) -> str:
    return ", ".join([f"x of shape {tuple(x.shape)}"] + [f"{k}={v}" for k, v in kw.items()])


WRONG_AXES = [{"axes": a} for a in ("sample", "first", "spatial", "all", "channels_last")]

# ----------------------------------------------------------------------------- batch norm forward

_BN_SHAPES = [((4, 3), [1.0, 0.05, 0.02], 1e-3), ((3, 2, 2, 3), [0.08, 1.0], 1e-2),   # smallest first
              ((2, 3, 3, 2), [0.5, 0.03, 1.5], 1e-3), ((8, 5), [2.0, 0.003, 0.5, 1.0, 0.01], 1e-5)]


def _bn_forward(x: Any, gamma: Any, beta: Any, eps: float, *, axes: str = "batch", ddof: int = 0,
                eps_mode: str = "inside", swap: bool = False, affine: bool = True) -> tuple[Any]:
    """Training-mode batch norm (x: (N, C, *), gamma/beta: (C,)); switches make mistakes."""
    xhat = _normalize(x, AXES[axes](x.ndim), eps, ddof=ddof, eps_mode=eps_mode)
    g, b = (beta, gamma) if swap else (gamma, beta)
    return (_chan(g, x.ndim) * xhat + _chan(b, x.ndim) if affine else xhat,)


def _forward_probes(seed: int) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for shape, stds, eps in _BN_SHAPES:
        x = _channels(rng, shape, stds)
        gamma, beta = _affine(rng, (shape[1],))
        probes.append(Probe(_label(x, eps=eps), (x, gamma, beta, eps)))
    return tuple(probes)


BN_FORWARD = Spec(
    "check_batch_norm_forward", "fn(x, gamma, beta, eps) -> y", (Output("y", 1),),
    _forward_probes(0), lambda x, g, b, eps: (bnp.batch_norm_forward(x, g, b, eps)[0],),
    _variants(_bn_forward, unbiased_variance=[{"ddof": 1}], eps_outside_sqrt=[{"eps_mode": "outside"}],
              missing_eps=[{"eps_mode": "none"}], divide_by_variance=[{"eps_mode": "variance"}],
              wrong_axes=WRONG_AXES, gamma_beta_swapped=[{"swap": True}],
              missing_affine=[{"affine": False}]))

# ----------------------------------------------------------------------------- batch norm backward


def _bn_backward(dy: Any, x: Any, gamma: Any, eps: float, *, axes: str = "batch", ddof: int = 0,
                 exact_unbiased: bool = False, stats_constant: bool = False, mean_term: bool = True,
                 xhat_term: bool = True, dgamma_xhat: bool = True,
                 params_averaged: bool = False) -> tuple[Any, Any, Any]:
    """(dx, dgamma, dbeta) of training-mode batch norm; switches make mistakes.

    dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / sqrt(σ² + eps),  dx̂ = dy·γ, means over the batch
    axes; ``exact_unbiased`` is the true gradient of the unbiased-variance forward.
    """
    ax, bax = AXES[axes](x.ndim), AXES["batch"](x.ndim)
    m = math.prod(x.shape[a] for a in ax)
    sigma = np.sqrt(x.var(axis=ax, keepdims=True, ddof=ddof) + eps)
    xhat = (x - x.mean(axis=ax, keepdims=True)) / sigma
    dbeta = dy.sum(axis=bax)
    dgamma = (dy * xhat).sum(axis=bax) if dgamma_xhat else dbeta.copy()
    if params_averaged:                          # means instead of sums over the batch axes
        count = x.size // x.shape[1]
        dgamma, dbeta = dgamma / count, dbeta / count
    dxhat = dy * _chan(gamma, x.ndim)
    dx = dxhat
    if not stats_constant:
        if mean_term:
            dx = dx - dxhat.mean(axis=ax, keepdims=True)
        if xhat_term:
            dx = dx - xhat * (dxhat * xhat).sum(axis=ax, keepdims=True) / (m - ddof * exact_unbiased)
    return dx / sigma, dgamma, dbeta


def _backward_probes(seed: int) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for shape, stds, eps in _BN_SHAPES:
        x = _channels(rng, shape, stds)
        dy = rng.standard_normal(shape) + _chan(rng.uniform(-1, 1, shape[1]), len(shape))
        gamma = rng.uniform(0.5, 2.0, shape[1])
        probes.append(Probe(_label(x, eps=eps), (dy, x, gamma, eps)))
    return tuple(probes)


def _bn_backward_reference(dy: Any, x: Any, gamma: Any, eps: float) -> tuple[Any, Any, Any]:
    _, cache = bnp.batch_norm_forward(x, gamma, np.zeros_like(gamma), eps)
    return bnp.batch_norm_backward(dy, cache)


BN_BACKWARD = Spec(
    "check_batch_norm_backward", "fn(dy, x, gamma, eps) -> (dx, dgamma, dbeta)",
    (Output("dx", 1), Output("dgamma", 0), Output("dbeta", 0)), _backward_probes(1),
    _bn_backward_reference,
    _variants(_bn_backward, stats_treated_constant=[{"stats_constant": True}],
              missing_mean_term=[{"mean_term": False}], missing_xhat_term=[{"xhat_term": False}],
              dgamma_missing_xhat=[{"dgamma_xhat": False}],
              unbiased_variance=[{"ddof": 1}, {"ddof": 1, "exact_unbiased": True}],
              wrong_axes=WRONG_AXES, params_averaged=[{"params_averaged": True}]))

# ----------------------------------------------------------------------------- running statistics


def _running_stats(running_mean: Any, running_var: Any, x: Any, momentum: float, *,
                   inverted: bool = False, ddof: int = 1) -> tuple[Any, Any]:
    """One update of the running statistics by batch x; switches make mistakes."""
    ax = AXES["batch"](x.ndim)
    f = 1.0 - momentum if inverted else momentum
    return (running.blend(running_mean, x.mean(axis=ax), f),
            running.blend(running_var, x.var(axis=ax, ddof=ddof), f))


def _running_reference(running_mean: Any, running_var: Any, x: Any, momentum: float) -> tuple[Any, Any]:
    ax = AXES["batch"](x.ndim)
    return running.running_stats(running_mean, running_var, x.mean(axis=ax), x.var(axis=ax),
                                 x.size // x.shape[1], momentum)


def _running_probes(seed: int) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for shape, momentum in [((4, 3), 0.1), ((6, 2), 0.05), ((2, 3, 2, 2), 0.3)]:   # smallest first
        x = _channels(rng, shape, [1.0, 0.5, 2.0])
        rm, rv = rng.uniform(-1, 1, shape[1]), rng.uniform(0.5, 2.0, shape[1])
        probes.append(Probe(_label(x, momentum=momentum), (rm, rv, x, momentum)))
    return tuple(probes)


RUNNING_STATS = Spec(
    "check_running_stats", "fn(running_mean, running_var, x, momentum) -> (running_mean, running_var)",
    (Output("running_mean", 0), Output("running_var", 0)), _running_probes(2), _running_reference,
    _variants(_running_stats, momentum_inverted=[{"inverted": True}, {"inverted": True, "ddof": 0}],
              biased_running_var=[{"ddof": 0}]))

# ----------------------------------------------------------------------------- inference


def _bn_inference(x: Any, running_mean: Any, running_var: Any, gamma: Any, beta: Any, eps: float, *,
                  batch_ddof: int | None = None, eps_mode: str = "inside", swap: bool = False) -> tuple[Any]:
    """Eval-mode batch norm with the running statistics (``batch_ddof`` set: the batch's)."""
    nd = x.ndim
    if batch_ddof is None:
        mean, var = _chan(running_mean, nd), _chan(running_var, nd)
    else:
        ax = AXES["batch"](nd)
        mean, var = x.mean(axis=ax, keepdims=True), x.var(axis=ax, keepdims=True, ddof=batch_ddof)
    g, b = (beta, gamma) if swap else (gamma, beta)
    return (_chan(g, nd) * (x - mean) / _denominator(var, eps, eps_mode) + _chan(b, nd),)


def _inference_probes(seed: int) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for shape, stds, eps in _BN_SHAPES[:3]:
        x = _channels(rng, shape, stds)
        ax = AXES["batch"](len(shape))
        rm = x.mean(axis=ax) + rng.uniform(0.2, 0.5, shape[1]) * x.std(axis=ax)
        rv = x.var(axis=ax) * rng.uniform(1.5, 2.5, shape[1])
        gamma, beta = _affine(rng, (shape[1],))
        probes.append(Probe(_label(x, eps=eps), (x, rm, rv, gamma, beta, eps)))
    return tuple(probes)


BN_INFERENCE = Spec(
    "check_batch_norm_inference", "fn(x, running_mean, running_var, gamma, beta, eps) -> y",
    (Output("y", 1),), _inference_probes(3), lambda *a: (bnp.batch_norm_inference(*a),),
    _variants(_bn_inference, uses_batch_stats=[{"batch_ddof": 0}, {"batch_ddof": 1}],
              eps_outside_sqrt=[{"eps_mode": "outside"}], missing_eps=[{"eps_mode": "none"}],
              divide_by_variance=[{"eps_mode": "variance"}], gamma_beta_swapped=[{"swap": True}]))

# ----------------------------------------------------------------------------- layer and group norm


def _layer_norm(x: Any, gamma: Any, beta: Any, eps: float, *, axes: str = "sample", ddof: int = 0,
                eps_mode: str = "inside", swap: bool = False, affine: bool = True) -> tuple[Any]:
    """Layer norm over all dims but the first, gamma/beta: x.shape[1:]; switches make mistakes."""
    xhat = _normalize(x, AXES[axes](x.ndim), eps, ddof=ddof, eps_mode=eps_mode)
    g, b = (beta, gamma) if swap else (gamma, beta)
    return (g * xhat + b if affine else xhat,)


def _norm_probes(seed: int, shapes: list[tuple[tuple[int, ...], int]],
                 per_channel: bool) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for (shape, groups), eps in zip(shapes, (1e-3, 1e-2, 1e-5)):
        x = _channels(rng, shape, [1.0, 0.02, 0.5, 2.0, 0.03, 1.0])
        x[0] *= 0.05                                    # a sample with a small spread: eps matters
        gamma, beta = _affine(rng, (shape[1],) if per_channel else shape[1:])
        kw = {"num_groups": groups} if per_channel else {}
        args = (x, groups, gamma, beta, eps) if per_channel else (x, gamma, beta, eps)
        probes.append(Probe(_label(x, **kw, eps=eps), args))
    return tuple(probes)


LAYER_NORM = Spec(
    "check_layer_norm_forward", "fn(x, gamma, beta, eps) -> y", (Output("y"),),
    _norm_probes(4, [((4, 5), 0), ((2, 3, 2, 2), 0), ((3, 4, 3), 0)], per_channel=False),
    lambda x, g, b, eps: (bnp.layer_norm_forward(x, x.shape[1:], g, b, eps)[0],),
    _variants(_layer_norm, unbiased_variance=[{"ddof": 1}], eps_outside_sqrt=[{"eps_mode": "outside"}],
              missing_eps=[{"eps_mode": "none"}], divide_by_variance=[{"eps_mode": "variance"}],
              wrong_axes=[{"axes": a} for a in ("first", "batch", "last", "all")],
              gamma_beta_swapped=[{"swap": True}], missing_affine=[{"affine": False}]))


def _group_norm(x: Any, num_groups: int, gamma: Any, beta: Any, eps: float, *,
                grouping: str = "contiguous", ddof: int = 0, eps_mode: str = "inside",
                affine: bool = True) -> tuple[Any]:
    """Group norm, each (sample, group of C/G consecutive channels) over its channels and
    space, gamma/beta per channel; ``grouping`` switches make mistakes."""
    N, C = x.shape[:2]
    if grouping == "contiguous":                 # channels g·C/G … (g+1)·C/G − 1 form group g
        xhat = _normalize(x.reshape(N, num_groups, -1), (2,), eps, ddof=ddof, eps_mode=eps_mode)
    elif grouping == "interleaved":              # channel c in group c mod G
        xg = x.reshape(N, C // num_groups, num_groups, -1)
        xhat = _normalize(xg, (1, 3), eps, ddof=ddof, eps_mode=eps_mode)
    else:                                        # "sample" (G = 1), "instance" (G = C)
        axes = (1, 2) if grouping == "sample" else (2,)
        xhat = _normalize(x.reshape(N, C, -1), axes, eps, ddof=ddof, eps_mode=eps_mode)
    y = xhat.reshape(x.shape)
    return (_chan(gamma, x.ndim) * y + _chan(beta, x.ndim) if affine else y,)


GROUP_NORM = Spec(
    "check_group_norm_forward", "fn(x, num_groups, gamma, beta, eps) -> y", (Output("y", 1),),
    _norm_probes(5, [((4, 4), 2), ((3, 4, 3), 2), ((2, 6, 2, 2), 3)], per_channel=True),
    lambda x, G, g, b, eps: (bnp.group_norm_forward(x, G, g, b, eps)[0],),
    _variants(_group_norm, groups_interleaved=[{"grouping": "interleaved"}],
              unbiased_variance=[{"ddof": 1}], eps_outside_sqrt=[{"eps_mode": "outside"}],
              missing_eps=[{"eps_mode": "none"}], divide_by_variance=[{"eps_mode": "variance"}],
              wrong_axes=[{"grouping": "sample"}, {"grouping": "instance"}],
              missing_affine=[{"affine": False}]))

# ----------------------------------------------------------------------------- folding


def _fold(W: Any, b: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, eps: float, *,
          eps_mode: str = "inside", use_bias: bool = True, scale_bias: bool = True) -> tuple[Any, Any]:
    """(W', b') with W'x + b' = BN(Wx + b) in eval mode: s = γ/sqrt(σ² + ε), W' = s·W (rows),
    b' = s·(b − μ) + β (b = 0 when None); switches make mistakes."""
    s = gamma / _denominator(running_var, eps, eps_mode)
    c = b if (b is not None and use_bias) else np.zeros_like(beta)
    return s[:, None] * W, (s * c if scale_bias else c) - s * running_mean + beta


def _fold_reference(W: Any, b: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                    eps: float) -> tuple[Any, Any]:
    import torch

    import bncourse.torch as bnt
    out, inp = W.shape
    lin = torch.nn.Linear(inp, out, bias=b is not None, dtype=torch.float64)
    bn = torch.nn.BatchNorm1d(out, eps=eps, dtype=torch.float64).eval()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        if lin.bias is not None:
            lin.bias.copy_(torch.from_numpy(b))
        for t, v in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, running_mean),
                     (bn.running_var, running_var)):
            assert t is not None                     # affine, tracking: all four exist
            t.copy_(torch.from_numpy(v))
    new = bnt.fold_bn_into(lin, bn)
    return new.weight.detach().numpy(), new.bias.detach().numpy()


def _fold_probes(seed: int) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for (out, inp), has_bias, eps in [((3, 2), True, 1e-3), ((2, 4), False, 1e-5), ((4, 3), True, 1e-2)]:
        W = rng.standard_normal((out, inp))
        b = rng.uniform(-2, 2, out) if has_bias else None
        gamma, beta = _affine(rng, (out,))
        rm, rv = rng.uniform(-1, 1, out), rng.uniform(0.5, 2.0, out)
        rv[1] = eps                                      # a channel where eps matters
        probes.append(Probe(f"W of shape {(out, inp)}, b {'given' if has_bias else 'None'}, eps={eps}",
                            (W, b, gamma, beta, rm, rv, eps)))
    return tuple(probes)


FOLD = Spec(
    "check_fold", "fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W_folded, b_folded)",
    (Output("W_folded", 0), Output("b_folded", 0)), _fold_probes(6), _fold_reference,
    _variants(_fold, missing_bias=[{"use_bias": False}], bias_not_scaled=[{"scale_bias": False}],
              eps_outside_sqrt=[{"eps_mode": "outside"}], missing_eps=[{"eps_mode": "none"}],
              divide_by_variance=[{"eps_mode": "variance"}]))

# ----------------------------------------------------------------------------- Chan's merge


def _merge(n_a: int, mean_a: Any, m2_a: Any, n_b: int, mean_b: Any, m2_b: Any, *,
           delta_term: str = "weighted", weighted_mean: bool = True) -> tuple[Any, Any, Any]:
    """(n, μ, M2) of the union: μ = μ_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n (δ = μ_b − μ_a);
    switches make mistakes."""
    n, delta = n_a + n_b, mean_b - mean_a
    mean = mean_a + delta * n_b / n if weighted_mean else (mean_a + mean_b) / 2
    m2 = m2_a + m2_b + {"weighted": delta**2 * n_a * n_b / n, "unscaled": delta**2, "none": 0}[delta_term]
    return n, mean, m2


def _merge_reference(n_a: int, mean_a: Any, m2_a: Any, n_b: int, mean_b: Any,
                     m2_b: Any) -> tuple[Any, Any, Any]:
    m = chan_merge(Moments(n_a, mean_a, m2_a), Moments(n_b, mean_b, m2_b))
    return m.n, m.mean, m.m2


def _merge_probes(seed: int) -> tuple[Probe, ...]:
    rng = np.random.default_rng(seed)
    probes = []
    for n_a, n_b in [(3, 5), (7, 2), (10, 4)]:
        parts = [rng.normal(rng.uniform(-2, 2, 3), rng.uniform(0.5, 2, 3), (n, 3)) for n in (n_a, n_b)]
        args = [v for p in parts for v in (len(p), p.mean(axis=0), ((p - p.mean(axis=0)) ** 2).sum(axis=0))]
        probes.append(Probe(f"n_a={n_a}, n_b={n_b}, 3 channels", tuple(args)))
    return tuple(probes)


MERGE = Spec(
    "check_merge", "fn(n_a, mean_a, m2_a, n_b, mean_b, m2_b) -> (n, mean, m2)",
    (Output("n", scalar_ok=True), Output("mean", 0), Output("m2", 0)), _merge_probes(7),
    _merge_reference,
    _variants(_merge, naive_m2=[{"delta_term": "none"}], m2_delta_unscaled=[{"delta_term": "unscaled"}],
              unweighted_mean=[{"weighted_mean": False}, {"weighted_mean": False, "delta_term": "none"}]))

SPECS = {s.name: s for s in (BN_FORWARD, BN_BACKWARD, RUNNING_STATS, BN_INFERENCE, LAYER_NORM,
                             GROUP_NORM, FOLD, MERGE)}
DEFAULTS = {"check_batch_norm_forward": _bn_forward, "check_batch_norm_backward": _bn_backward,
            "check_running_stats": _running_stats, "check_batch_norm_inference": _bn_inference,
            "check_layer_norm_forward": _layer_norm, "check_group_norm_forward": _group_norm,
            "check_fold": _fold, "check_merge": _merge}   # the switchable functions, for the tests
