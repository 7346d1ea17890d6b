"""``BatchNorm1d/2d/3d``: ``torch.nn``'s modules with our batch norm in ``forward``.

PyTorch splits its modules ``_NormBase`` (parameters, buffers, ``reset_parameters``,
``extra_repr``, ``_load_from_state_dict``: old checkpoints without ``num_batches_tracked``)
→ ``_BatchNorm`` (``forward``) → ``BatchNorm1d/2d/3d`` (only ``_check_input_dim`` differs).
We reuse that hierarchy instead of copying it: our :class:`_BatchNorm` subclasses PyTorch's
and overrides ``forward`` only, and ``BatchNorm2d(_BatchNorm, torch.nn.BatchNorm2d)`` takes
the input check (and ``isinstance(m, torch.nn.BatchNorm2d)``, which initialisation loops,
weight-decay filters and ``torch.nn.utils.fusion`` rely on) from PyTorch's class.  So the
constructor, parameters, buffers, ``state_dict`` keys and ``repr`` are PyTorch's exactly
and state dicts move between the two in both directions.
"""

import torch

from ..core.running import momentum_weight
from .functional import batch_norm


class _BatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm over dim 1 with ``torch.nn.BatchNorm*d``'s rules.

    Training: normalize with the batch mean and *biased* variance; with
    ``track_running_stats``, update running_mean ← (1 − f)·running_mean + f·μ and
    running_var ← (1 − f)·running_var + f·σ²·m/(m − 1) (unbiased), where f = ``momentum``
    weights the *new* value, or f = 1/num_batches_tracked (a cumulative average) when
    ``momentum is None``; ``num_batches_tracked`` counts training batches.  Eval: normalize
    with the running statistics, or the batch's when they are not tracked.  A call that
    raises changes no buffer (PyTorch counts the batch before it checks it).
    """

    def _momentum(self, tracking):
        if tracking:                          # None: cumulative average over the batches
            return momentum_weight(self.momentum, int(self.num_batches_tracked))
        return 0.0 if self.momentum is None else self.momentum

    def forward(self, input):
        self._check_input_dim(input)
        tracking = self.training and self.track_running_stats and self.num_batches_tracked is not None
        # batch statistics in training, and in eval when there are no running statistics
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # the buffers are passed when they are used (eval) or updated (tracked training)
        use_buffers = not self.training or self.track_running_stats
        y = self._batch_norm(input,
                             self.running_mean if use_buffers else None,
                             self.running_var if use_buffers else None,
                             batch_stats, self._momentum(tracking))
        if tracking:
            self.num_batches_tracked.add_(1)
        return y

    def _batch_norm(self, input, running_mean, running_var, batch_stats, momentum):
        """The normalization itself (the distributed module reduces across processes)."""
        return batch_norm(input, running_mean, running_var, self.weight, self.bias,
                          batch_stats, momentum, self.eps)


class BatchNorm1d(_BatchNorm, torch.nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` (inputs (N, C) or (N, C, L)) computed by ``bncourse.torch``."""


class BatchNorm2d(_BatchNorm, torch.nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` (inputs (N, C, H, W)) computed by ``bncourse.torch``."""


class BatchNorm3d(_BatchNorm, torch.nn.BatchNorm3d):
    """``torch.nn.BatchNorm3d`` (inputs (N, C, D, H, W)) computed by ``bncourse.torch``."""


TORCH_TO_OURS = {torch.nn.BatchNorm1d: BatchNorm1d, torch.nn.BatchNorm2d: BatchNorm2d,
                 torch.nn.BatchNorm3d: BatchNorm3d}


def retype(module, cls):
    """A ``cls`` instance holding ``module``'s state: the same parameter and buffer tensors,
    hooks, flags (``training``) and attributes; only the containers are copied."""
    new = cls.__new__(cls)
    new.__dict__.update({k: v.copy() if isinstance(v, dict) else v for k, v in vars(module).items()})
    return new


def replace_modules(module, convert):
    """Apply ``convert(m) -> m'`` to every module of the tree, in place; a module reached
    twice (shared) is converted once.  Returns ``convert(module)``."""
    memo = {}

    def once(m):
        if id(m) not in memo:
            memo[id(m)] = convert(m)
        return memo[id(m)]

    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                parent._modules[name] = once(child)
    return once(module)


def convert_batchnorm(module):
    """Swap every ``torch.nn.BatchNorm1d/2d/3d`` in ``module`` for ours, in place.

    The new modules hold the *same* parameter and buffer tensors (an optimizer built before
    the conversion keeps working), device, dtype, mode and hooks.  Only those exact classes
    are converted: subclasses (which may change behaviour), ``LazyBatchNorm*d`` before their
    first call and ``torch.nn.SyncBatchNorm`` (see
    :func:`bncourse.torch.convert_sync_batchnorm`) are left alone.  Returns ``module``, or the
    new module when ``module`` itself is a batch norm.
    """
    def convert(m):
        cls = TORCH_TO_OURS.get(type(m))
        return m if cls is None else retype(m, cls)
    return replace_modules(module, convert)
