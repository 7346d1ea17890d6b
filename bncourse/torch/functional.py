"""Batch norm as a ``torch.autograd.Function`` with the closed-form backward, and
:func:`batch_norm` with the signature and semantics of ``torch.nn.functional.batch_norm``.
"""

import torch

from ..core import validation as _checks
from ._normalize import (
    batch_plan,
    frozen_statistics,
    function_backward,
    function_jvp,
    norm_forward,
    norm_outputs,
    setup_norm_context,
    update_running_stats_,
)

VMAP_RUNNING_STATS = (
    "Batch norm got a batched tensor as input while the running_mean or running_var, which "
    "will be updated in place, were not batched.\nIf you are using a module and do not need "
    "eval mode, please set `track_running_stats` to be False.If you are using a prebuilt "
    "module and do not need eval mode, please see the functorch website for resources on "
    "how to patch your module to work with vmap")      # PyTorch's message, verbatim


def _plan(input, running_mean, running_var, training, eps):
    if training:
        return batch_plan(input.ndim, eps)
    return batch_plan(input.ndim, eps, frozen_statistics(running_mean, running_var), frozen=True)


def vmap_fold(v, bdim, B, into):
    """Fold the vmapped dim ``bdim`` of ``v`` (None: unbatched, expanded) into dim ``into``
    of the per-sample shape: (B, ..., C, ...) → (..., B·C, ...), B outermost."""
    if v is None:
        return None
    v = v.unsqueeze(0).expand(B, *v.shape) if bdim is None else v.movedim(bdim, 0)
    v = v.movedim(0, into)
    return v.reshape(*v.shape[:into], -1, *v.shape[into + 2:])


def vmap_unfold(outputs, into, B):
    """Inverse of :func:`vmap_fold` on each output: dim ``into`` (B·C) → (B, C) there."""
    return tuple(o.unflatten(into, (B, -1)) for o in outputs)


class BatchNormFunction(torch.autograd.Function):
    """y = w·(x − μ)/sqrt(σ² + ε) + b per channel (dim 1) of a (N, C, *spatial) input.

    ``training=True``: μ and the *biased* σ² are the batch's, over the m = N·prod(spatial)
    values of each channel; given running statistics are then updated in place,
    mean ← (1 − f)·mean + f·μ,  var ← (1 − f)·var + f·σ²·m/(m − 1)  (unbiased), f = momentum.
    ``training=False``: μ, σ² are the given running statistics (constants).

    Backward (not autograd of the forward), k = w/sqrt(σ² + ε):
        dx = k·(dy − mean(dy) − x̂·mean(dy·x̂)),  dw = Σ dy·x̂,  db = Σ dy
    (eval: dx = k·dy), reductions accumulated in float64; forward mode (``jvp``) the same
    projection of the tangent.  float16/bfloat16 inputs are computed in float32 and returned
    in their dtype.  Inputs are validated by :func:`batch_norm`; ``apply`` them in the order
    of ``forward``.  Returns (y, r, μ, σ̂⁻¹): the statistics (shape (1, C, 1, ...)) are
    non-differentiable outputs that backward reads.

    ``torch.func``: ``vmap`` folds the vmapped dim into the channels, B×C channels of one
    call (:meth:`vmap`); ``grad``, ``jacrev``, ``jvp``, ``jacfwd`` and their compositions work.
    """

    @staticmethod
    def forward(input, weight, bias, running_mean, running_var, training, momentum, eps):
        plan = _plan(input, running_mean, running_var, training, eps)
        y, st = norm_forward(input, weight, bias, plan)
        if training:
            update_running_stats_(running_mean, running_var, st, momentum)
        return norm_outputs(y, st, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, _, _, running_mean, running_var, training, _, eps = inputs
        setup_norm_context(ctx, _plan(input, running_mean, running_var, training, eps), inputs, output)

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, input, weight, bias, running_mean, running_var, training, momentum, eps):
        """A batch of B batch norms is one batch norm of B×C channels: (B, N, C, *S) →
        (N, B·C, *S).  Running statistics, when updated (training), must be batched as the
        input is, (B, C): PyTorch's rule; in eval unbatched ones are shared."""
        B = info.batch_size
        dims = dict(zip(("input", "weight", "bias", "running_mean", "running_var"), in_dims))
        # both updated statistics batched, or the update of an unbatched one would be lost
        if training and running_mean is not None and (
                dims["running_mean"] is None or dims["running_var"] is None):
            raise _checks.InputError(VMAP_RUNNING_STATS)
        x = vmap_fold(input, dims["input"], B, 1)                      # (N, B·C, *S)
        folded = [vmap_fold(v, dims[k], B, 0) for k, v in
                  (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                   ("running_var", running_var))]
        rm, rv = (None if v is None else v.clone() for v in folded[2:])   # (B·C,), ours
        out = BatchNormFunction.apply(x, folded[0], folded[1], rm, rv, training, momentum, eps)
        if training:                              # write the updated statistics back
            for k, buf, new in (("running_mean", running_mean, rm), ("running_var", running_var, rv)):
                if buf is not None and dims[k] is not None:
                    buf.movedim(dims[k], 0).copy_(new.view(B, -1))
        return vmap_unfold(out, 1, B), (1,) * len(out)


def check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum, eps,
                          check_count=True):
    """Every check of :func:`batch_norm`, before anything is computed or updated.
    ``check_count=False`` leaves the values-per-channel check to the caller (distributed:
    only the group's total count is known, after the statistics are gathered)."""
    _checks.check_input(input)
    _checks.check_bool(training, "training", "batch_norm")        # issue 14: was bool(training)
    C = input.shape[1]
    if training and check_count:
        _checks.check_values_per_channel(input, batch_plan(input.ndim, eps).dims)
    _checks.check_eps(eps, training)
    _checks.check_running_pair(running_mean, running_var, training)
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        # issue 14: dtypes paired as in PyTorch, running statistics 1-D (were: any)
        _checks.check_tensor_channels(v, C, name, input.device, input.dtype,
                                      vector=name.startswith("running"))
        # issue 14: PyTorch's rule; was a silent zero gradient
        if name.startswith("running") and v is not None and v.requires_grad and torch.is_grad_enabled():
            raise _checks.InputError(f"The function 'native_batch_norm' is not differentiable with respect "
                                     f"to argument '{name}'. This input cannot have requires_grad True.")
    if training and running_mean is not None:
        _checks.check_momentum(momentum, allow_none=False, bounded=False)   # issue 14: any finite


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization over dim 1, a drop-in for ``torch.nn.functional.batch_norm``.

    Args:
        input: (N, C, *spatial) tensor, 2-D or more, float16/bfloat16/float32/float64 (a
            1-D empty tensor is returned copied, as in PyTorch).
        running_mean, running_var: (C,) tensors or both None.  Required when
            ``training=False`` (they normalize); updated in place when ``training=True``.
        weight, bias: tensors of C elements or None (no scale / no shift).  Parameters and
            running statistics have the input's dtype, or float32 for float16/bfloat16 input.
        training: a bool.  Normalize with the batch's statistics (biased variance) and
            update the running ones; otherwise normalize with the running statistics.
        momentum: f, the weight of the *new* value in the running update (usually in
            [0, 1]; any finite number, as in PyTorch).
        eps: added to the variance; > 0 when training, >= 0 otherwise.
    Returns:
        y with input's shape and dtype.

    Differences from PyTorch: statistics are exact to float64 accumulation (the module
    docstring of ``bncourse.core.torch_stats``); a call that raises changes nothing.
    """
    if isinstance(input, torch.Tensor) and input.ndim == 1 and input.numel() == 0:
        # issue 14: PyTorch's empty-input rule (a copy, running statistics untouched) for
        # the 1-D empty batch; was "expected 2D to 5D input"
        _checks.check_tensor(input, "input")
        _checks.check_bool(training, "training", "batch_norm")
        return input.clone()
    check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return BatchNormFunction.apply(input, weight, bias, running_mean, running_var,
                                   training, momentum, eps)[0]
