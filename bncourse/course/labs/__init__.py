"""Labs: you implement batch norm (and friends); a checker runs your function on seeded
probes and, when it is wrong, names the mistake.

    from bncourse import labs
    labs.check_batch_norm_forward(my_batch_norm)     # a green or red box in a notebook

Every checker takes your function, calls it on NumPy float64 probe inputs — 2-D (N, C) and
4-D (N, C, H, W) arrays, channels on axis 1, several batch sizes, channels with small
variances so that eps matters — reads what it returns with ``np.asarray`` (you may work in
torch and return ``tensor.numpy()``) and compares it with the package's reference
(:mod:`bncourse.numpy`, :mod:`bncourse.core.running`, :mod:`bncourse.torch` folding, the
Chan merge of :mod:`bncourse.course.stats`).  Your function returns new values; it may not
rely on modifying its arguments.  An output passes when its normwise error
max|yours − reference| / max(1, max|reference|) is at most ``RTOL`` = 1e-4 (float32 work passes).

Diagnosis.  Each checker also computes, on the same probes, the outputs of every catalogued
mistake (:data:`MISTAKES`; ``CATALOGUE[checker]`` lists a checker's ids).  When your outputs
match one of them on every probe it is named in ``result.mistake``, with where to look; the
probes are chosen so that the mistakes differ from each other and from the correct answer.
Otherwise ``mistake`` is None and the message localizes the error: the smallest probe that
shows it, and for each output the largest error, its index and channel, and the wrong
channels.  If your function raises, or returns the wrong type or shape, the result fails and
the message shows your own traceback lines.  A checker never raises for your code; it raises
``TypeError`` only when given something that is not callable.

Conventions (PyTorch's): biased variance (divide by m, the number of values per channel) to
normalize; unbiased (m − 1) for ``running_var``; ``momentum`` weights the *new* batch.
"""

from collections.abc import Callable
from typing import Any

from .catalogue import SPECS
from .result import RTOL, LabResult, check

__all__ = ["CATALOGUE", "MISTAKES", "RTOL", "LabResult", "check_batch_norm_backward",
           "check_batch_norm_forward", "check_batch_norm_inference", "check_fold",
           "check_group_norm_forward", "check_layer_norm_forward", "check_merge",
           "check_running_stats"]

MISTAKES: dict[str, str] = {
    "unbiased_variance": "the variance divides by m − 1 (unbiased); normalizing uses the biased "
                         "variance, dividing by m",
    "eps_outside_sqrt": "eps is added to the standard deviation, sqrt(var) + eps, instead of to "
                        "the variance inside the square root",
    "missing_eps": "eps is never used: the denominator is sqrt(var)",
    "divide_by_variance": "divides by the variance (plus eps) instead of by its square root",
    "wrong_axes": "the statistics are taken over the wrong axes (per sample, or over the wrong "
                  "axes of a 3-D/4-D input)",
    "gamma_beta_swapped": "gamma and beta are swapped: beta scales and gamma shifts",
    "missing_affine": "gamma and beta are never applied: the output is the normalized x̂",
    "stats_treated_constant": "the mean and variance are treated as constants: no gradient flows "
                              "through them (dx = dy·γ/σ)",
    "missing_mean_term": "dx lacks the term from the mean: mean(dy·γ) is not subtracted",
    "missing_xhat_term": "dx lacks the term from the variance: x̂·mean(dy·γ·x̂) is not subtracted",
    "dgamma_missing_xhat": "dgamma is the sum of dy alone; it is the sum of dy·x̂",
    "params_averaged": "dgamma and dbeta are averaged over the batch; they are sums",
    "momentum_inverted": "momentum weights the old running value instead of the new batch",
    "biased_running_var": "running_var tracks the biased batch variance; PyTorch tracks the "
                          "unbiased one (m − 1)",
    "uses_batch_stats": "inference normalizes with the batch's own statistics instead of the "
                        "running statistics",
    "groups_interleaved": "the groups are interleaved (channel c in group c mod G); a group is "
                          "C/G consecutive channels",
    "missing_bias": "the Linear's own bias b is dropped from the folded bias",
    "bias_not_scaled": "the Linear's bias b enters the folded bias unscaled; it must be "
                       "multiplied by γ/sqrt(σ² + eps) like the rest",
    "naive_m2": "M2 of the union is M2_a + M2_b: the term for the spread between the two means "
                "is missing",
    "m2_delta_unscaled": "the between-means term of M2 is δ² alone; it is weighted by n_a·n_b/n",
    "unweighted_mean": "the merged mean is the plain average of the two means; it is weighted "
                       "by the counts",
}

HINTS: dict[str, str] = {
    "unbiased_variance": "the line that computes the variance: which count does it divide by?",
    "eps_outside_sqrt": "the denominator: where is eps added?",
    "missing_eps": "the denominator: eps is an argument for a reason",
    "divide_by_variance": "the denominator: a variance has the units of x squared",
    "wrong_axes": "the axis argument of your reductions: one mean per channel, over the batch "
                  "(and spatial) axes",
    "gamma_beta_swapped": "the last line: which parameter multiplies and which is added?",
    "missing_affine": "the last line: the learned scale and shift",
    "stats_treated_constant": "the chain rule: μ and σ depend on every x of the channel",
    "missing_mean_term": "the gradient through the mean μ",
    "missing_xhat_term": "the gradient through the variance σ²",
    "dgamma_missing_xhat": "the line computing dgamma: y = γ·x̂ + β",
    "params_averaged": "the reductions for dgamma and dbeta: each sample adds its gradient",
    "momentum_inverted": "the weights of the moving average: momentum multiplies the new value",
    "biased_running_var": "the variance you feed into running_var",
    "uses_batch_stats": "which mean and variance you normalize with",
    "groups_interleaved": "how you reshape x into groups",
    "missing_bias": "the folded bias when the Linear has a bias",
    "bias_not_scaled": "the folded bias: BN scales everything the Linear outputs",
    "naive_m2": "the M2 line: deviations are taken from the merged mean, not each part's",
    "m2_delta_unscaled": "the factor of δ² in the M2 line",
    "unweighted_mean": "the mean line: the parts have different sizes",
}

CATALOGUE: dict[str, tuple[str, ...]] = {name: tuple(s.catalogue) for name, s in SPECS.items()}


def _run(name: str, fn: Callable[..., Any]) -> LabResult:
    return check(fn, SPECS[name], MISTAKES, HINTS)


def check_batch_norm_forward(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(x, gamma, beta, eps) -> y``: training-mode batch norm.

    x: (N, C) or (N, C, H, W); gamma, beta: (C,); y: x's shape.
    y = γ·(x − μ)/sqrt(σ² + eps) + β with μ, σ² (biased) per channel over all axes but 1.
    """
    return _run("check_batch_norm_forward", fn)


def check_batch_norm_backward(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(dy, x, gamma, eps) -> (dx, dgamma, dbeta)``: the gradients of training-mode
    batch norm (the batch statistics depend on x).  dy, x, dx: (N, C) or (N, C, H, W);
    gamma, dgamma, dbeta: (C,)."""
    return _run("check_batch_norm_backward", fn)


def check_running_stats(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(running_mean, running_var, x, momentum) -> (running_mean, running_var)``:
    one update by batch x, new = (1 − momentum)·old + momentum·batch statistic, with the
    *unbiased* batch variance for running_var.  running_*: (C,); x: (N, C) or (N, C, H, W)."""
    return _run("check_running_stats", fn)


def check_batch_norm_inference(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(x, running_mean, running_var, gamma, beta, eps) -> y``: eval-mode batch
    norm, y = γ·(x − running_mean)/sqrt(running_var + eps) + β.  x: (N, C) or (N, C, H, W);
    the others (C,)."""
    return _run("check_batch_norm_inference", fn)


def check_layer_norm_forward(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(x, gamma, beta, eps) -> y``: layer norm of each sample over all dims but
    the first (biased variance).  x: (N, *D); gamma, beta: D = x.shape[1:] (elementwise, as
    ``torch.nn.LayerNorm(x.shape[1:])``); y: x's shape."""
    return _run("check_layer_norm_forward", fn)


def check_group_norm_forward(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(x, num_groups, gamma, beta, eps) -> y``: group norm as in
    ``torch.nn.GroupNorm``: the C channels form num_groups groups of C/num_groups consecutive
    channels; each (sample, group) is normalized over its channels and spatial positions
    (biased variance); then y = γ_c·x̂ + β_c per channel.  x: (N, C, *); gamma, beta: (C,)."""
    return _run("check_group_norm_forward", fn)


def check_fold(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W_folded, b_folded)``:
    fold an eval-mode batch norm over the ``out`` features into the Linear before it, so that
    W_folded·x + b_folded = BN(W·x + b).  W: (out, in); b: (out,) or None (then b = 0);
    the others (out,); returns (out, in) and (out,).  Needs torch (the reference is
    :func:`bncourse.torch.fold_bn_into`)."""
    return _run("check_fold", fn)


def check_merge(fn: Callable[..., Any]) -> LabResult:
    """Check ``fn(n_a, mean_a, m2_a, n_b, mean_b, m2_b) -> (n, mean, m2)``: Chan's parallel
    merge of two disjoint parts' counts (ints), per-channel means and sums of squared
    deviations M2 = Σ (x − μ)² ((C,) arrays) into those of their union."""
    return _run("check_merge", fn)
