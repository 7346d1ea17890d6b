"""Batch norm as a ``torch.autograd.Function`` with the closed-form backward, and
:func:`batch_norm` with the signature and semantics of ``torch.nn.functional.batch_norm``.
"""

import torch

from ..core import validation as _checks
from ._normalize import (batch_plan, frozen_statistics, function_backward, norm_forward,
                         update_running_stats_)


class BatchNormFunction(torch.autograd.Function):
    """y = w·(x − μ)/sqrt(σ² + ε) + b per channel (dim 1) of a (N, C, *spatial) input.

    ``training=True``: μ and the *biased* σ² are the batch's, over the m = N·prod(spatial)
    values of each channel; given running statistics are then updated in place,
    mean ← (1 − f)·mean + f·μ,  var ← (1 − f)·var + f·σ²·m/(m − 1)  (unbiased), f = momentum.
    ``training=False``: μ, σ² are the given running statistics (constants).

    Backward (not autograd of the forward), k = w/sqrt(σ² + ε):
        dx = k·(dy − mean(dy) − x̂·mean(dy·x̂)),  dw = Σ dy·x̂,  db = Σ dy
    (eval: dx = k·dy), reductions accumulated in float64.  float16/bfloat16 inputs are
    computed in float32 and returned in their dtype.  Inputs are validated by
    :func:`batch_norm`; ``apply`` them in the order of ``forward``.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, training, momentum, eps):
        plan = (batch_plan(input.ndim, eps) if training else
                batch_plan(input.ndim, eps, frozen_statistics(running_mean, running_var)))
        y, st = norm_forward(ctx, input, weight, bias, plan)
        if training:
            update_running_stats_(running_mean, running_var, st, momentum)
        return y

    backward = staticmethod(function_backward)


def check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum, eps,
                          check_count=True):
    """Every check of :func:`batch_norm`, before anything is computed or updated.
    ``check_count=False`` leaves the values-per-channel check to the caller (distributed:
    only the group's total count is known, after the statistics are gathered)."""
    _checks.check_input(input)
    C = input.shape[1]
    if training and check_count:
        _checks.check_values_per_channel(input, batch_plan(input.ndim, eps).dims)
    _checks.check_eps(eps, training)
    _checks.check_running_pair(running_mean, running_var, training)
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _checks.check_tensor_channels(v, C, name, input.device)
    if training and running_mean is not None:
        _checks.check_momentum(momentum, allow_none=False)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization over dim 1, a drop-in for ``torch.nn.functional.batch_norm``.

    Args:
        input: (N, C, *spatial) tensor, 2-D to 5-D, float16/bfloat16/float32/float64.
        running_mean, running_var: (C,) tensors or both None.  Required when
            ``training=False`` (they normalize); updated in place when ``training=True``.
        weight, bias: (C,) tensors or None (no scale / no shift).
        training: normalize with the batch's statistics (biased variance) and update the
            running ones; otherwise normalize with the running statistics.
        momentum: f, the weight of the *new* value in the running update, in [0, 1].
        eps: added to the variance; > 0 when training, >= 0 otherwise.
    Returns:
        y with input's shape and dtype.

    Differences from PyTorch: statistics are exact to float64 accumulation (the module
    docstring of ``bncourse.core.torch_stats``); a call that raises changes nothing.
    """
    check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return BatchNormFunction.apply(input, weight, bias, running_mean, running_var,
                                   bool(training), momentum, eps)
