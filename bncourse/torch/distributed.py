"""Synchronized batch norm over ``torch.distributed`` (gloo on CPU, NCCL on GPU, ...).

In training, the statistics of a channel are those of the *concatenation* of every
process's batch, so the result equals single-process batch norm on the whole batch.

Forward.  Each process computes its local (n_k, μ_k, M2_k) per channel with the shifted,
float64-accumulated sums of :mod:`bncourse.core.torch_stats`; one ``all_gather`` collects them
(world × (2C + 1) float64 values) and every process merges them in rank order with Chan
et al.'s pairwise formula (:func:`bncourse.core.moments.merge`), so that all hold
bitwise the same (n, μ, M2) and update their running statistics identically.  Why not
all-reduce (n, Σx, Σx²)?  Σx² − (Σx)²/n cancels catastrophically for offset data (the
one-pass formula), and sums of squares around a *shared* reference would need a first
round to agree on one; per-process (n, μ, M2) merged by Chan's formula adds only
non-negative terms, in one round.  Each process then normalizes its own batch around its
own reference r with the global μ and σ² = M2/n.

Backward.  Local Σdy and Σdy·x̂ (float64) are all-reduced, and
dx = k·(dy − Σdy/n − x̂·Σ(dy·x̂)/n) with the global n.  dweight and dbias are returned as
the *local* sums, as ``torch.nn.SyncBatchNorm`` does: data-parallel training
(``DistributedDataParallel``) sums parameter gradients across processes.

Batch sizes may differ between processes, down to 1 or 0 (an empty process still takes
part in every collective), as long as the group's total count per channel exceeds 1;
otherwise every process raises the same ``ValueError`` (the check follows the gather, so
none is left waiting).  An argument error raised on one process only, before the
collective, leaves the others waiting until the process group's timeout, as in PyTorch.
"""

from functools import reduce

import torch
import torch.distributed as dist

from ..core.moments import Moments, merge
from ..core.torch_stats import moments
from ._normalize import (
    batch_plan,
    function_backward,
    function_jvp,
    make_stats,
    norm_forward,
    norm_outputs,
    setup_norm_context,
    update_running_stats_,
)
from .functional import check_batch_norm_args
from .modules import _BatchNorm, replace_modules, retype


def gathered_statistics(group):
    """Batch statistics of the whole process group, merged with Chan's formula."""
    def statistics(plan, xw):
        mo = moments(xw, plan.dims)
        count = torch.tensor([float(mo.count)], dtype=torch.float64, device=xw.device)
        local = torch.cat([count, mo.mean.flatten(), mo.m2.flatten()])     # (2C + 1,)
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, local, group=group)
        C = mo.mean.numel()
        # rank order, on every process alike: bitwise the same result everywhere
        total = reduce(merge, (Moments(int(p[0]), p[1:C + 1], p[C + 1:]) for p in parts))
        n, mean, m2 = total.n, total.mean, total.m2
        if n <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got input "
                             f"size {xw.size()} on this process and {int(n)} value(s) per "
                             "channel in the whole process group")
        view = plan.param_view
        return make_stats(int(n), mo.ref, mean.reshape(view), (m2 / n).reshape(view), plan.eps), mo.shifted
    return statistics


def all_reduced(group):
    """Backward: the group's Σdy and Σdy·x̂ from the local ones (one all-reduce)."""
    def reduce(s1, s2):
        both = torch.cat([s1, s2])
        dist.all_reduce(both, dist.ReduceOp.SUM, group=group)
        return both.chunk(2)
    return reduce


def sync_plan(ndim, eps, group):
    return batch_plan(ndim, eps, gathered_statistics(group), all_reduced(group),
                      stat_fields=("ref", "mean", "invstd", "count"))


class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm with the statistics of a whole process group (module
    docstring); the running statistics, if given, are updated with the group's mean and
    unbiased variance.  Returns (y, r, μ, σ̂⁻¹, n) with n the group's count (a float64
    tensor).  Double backward, forward-mode AD and ``torch.func.vmap`` are not supported
    (the reductions are collectives; vmap raises)."""

    @staticmethod
    def forward(input, weight, bias, running_mean, running_var, momentum, eps, process_group):
        plan = sync_plan(input.ndim, eps, process_group)
        y, st = norm_forward(input, weight, bias, plan)
        update_running_stats_(running_mean, running_var, st, momentum)
        st.count = torch.tensor(float(st.count), dtype=torch.float64, device=input.device)
        return norm_outputs(y, st, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, eps, group = inputs[0], inputs[6], inputs[7]
        setup_norm_context(ctx, sync_plan(input.ndim, eps, group), inputs, output,
                           count=int(output[-1]))

    backward = staticmethod(function_backward)
    jvp = staticmethod(function_jvp)

    @staticmethod
    def vmap(info, in_dims, *args):
        raise NotImplementedError(
            "bncourse.torch.sync_batch_norm (SyncBatchNorm) does not support torch.func.vmap: "
            "its statistics are collectives over a process group")


def sync_batch_norm(input, running_mean, running_var, weight=None, bias=None, momentum=0.1,
                    eps=1e-5, process_group=None):
    """Training-mode :func:`bncourse.torch.batch_norm` over every process of
    ``process_group`` (default: the whole world).  Every process must call it."""
    check_batch_norm_args(input, running_mean, running_var, weight, bias, True, momentum, eps,
                          check_count=False)
    group = dist.group.WORLD if process_group is None else process_group
    return SyncBatchNormFunction.apply(input, weight, bias, running_mean, running_var, momentum,
                                       eps, group)[0]


class SyncBatchNorm(_BatchNorm):
    """``torch.nn.SyncBatchNorm``'s constructor and state, computed by bncourse.torch.

    In training, with ``torch.distributed`` initialized and more than one process in
    ``process_group``, statistics are synchronized (:func:`sync_batch_norm`); otherwise
    (eval mode, a single process) it is :class:`bncourse.torch.BatchNorm2d` and friends.
    Unlike PyTorch's it also runs on CPU tensors (gloo).  Inputs (N, C, *spatial), 2-D to
    5-D; further keyword arguments go to ``torch.nn``'s batch norm (e.g. ``bias=False``).
    ``torch.func.vmap``, forward-mode AD and double backward are not supported while it
    synchronizes (vmap raises ``NotImplementedError``); unsynchronized it is batch norm.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, device=None, dtype=None, **kwargs):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _group(self):
        """The process group to synchronize over, or None when there is nothing to sync."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        group = dist.group.WORLD if self.process_group is None else self.process_group
        return group if dist.get_world_size(group) > 1 else None

    def _batch_norm(self, input, running_mean, running_var, batch_stats, momentum):
        group = self._group() if self.training else None
        if group is None:
            return super()._batch_norm(input, running_mean, running_var, batch_stats, momentum)
        return sync_batch_norm(input, running_mean, running_var, self.weight, self.bias,
                               momentum, self.eps, group)


SYNC_SOURCES = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
                torch.nn.SyncBatchNorm)


def convert_sync_batchnorm(module, process_group=None):
    """Swap every batch norm of ``module`` (``torch.nn.BatchNorm1d/2d/3d``,
    ``torch.nn.SyncBatchNorm`` and ours) for :class:`SyncBatchNorm`, in place, keeping the
    same parameter and buffer tensors, mode and hooks (as :func:`convert_batchnorm`).
    Returns ``module``, or the new module when ``module`` itself is a batch norm."""
    def convert(m):
        if isinstance(m, SyncBatchNorm) or not isinstance(m, SYNC_SOURCES):
            return m
        if isinstance(m, torch.nn.modules.lazy.LazyModuleMixin):   # not initialized yet
            return m
        new = retype(m, SyncBatchNorm)
        new.process_group = process_group
        return new
    return replace_modules(module, convert)
