"""Ghost batch norm (Hoffer, Hubara & Soudry 2017): batch norm whose statistics come from
small "ghost" batches, slices of the mini-batch, instead of from the whole mini-batch.

In training mode the input's dim 0 is split into consecutive chunks of ``ghost_batch_size``
samples (the last may be smaller); each chunk is normalized by its own μ_B and σ_B² (biased,
over the m = n_ghost·spatial values of a channel) and then scaled by γ and shifted by β.
``running_mean`` and ``running_var`` are updated once per chunk, in order, exactly as
``torch.nn.BatchNorm`` would be by a sequence of calls on the chunks: ``momentum`` is the
weight of the *new* value and ``running_var`` tracks the *unbiased* variance (m / (m − 1)).
In eval mode it is plain eval-mode batch norm with the running statistics.  When
``ghost_batch_size`` is at least the batch size it equals ``torch.nn.BatchNorm1d/2d``.

Smaller ghost batches make μ_B and σ_B² noisier; that noise is the regularizer the
batch-size experiments of chapter 15 measure.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F

__all__ = ["GhostBatchNorm1d", "GhostBatchNorm2d"]


class _GhostBatchNorm(nn.Module):
    _dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, ghost_batch_size: int, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if not isinstance(ghost_batch_size, int) or ghost_batch_size < 1:
            raise ValueError(f"ghost_batch_size must be a positive int, got {ghost_batch_size!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.num_features = num_features
        self.ghost_batch_size = ghost_batch_size
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight: nn.Parameter | None
        self.bias: nn.Parameter | None
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.running_mean: Tensor | None
        self.running_var: Tensor | None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, ghost_batch_size={self.ghost_batch_size}, "
                f"eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def forward(self, input: Tensor) -> Tensor:  # (N, C, *spatial)
        if input.dim() not in self._dims:
            raise ValueError(f"expected {' or '.join(f'{d}D' for d in self._dims)} input, "
                             f"got {input.dim()}D")
        if input.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels on dim 1, "
                             f"got {input.shape[1]}")
        use_batch = self.training or self.running_mean is None
        if not use_batch:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps)
        chunks = input.split(self.ghost_batch_size, dim=0)  # views, in order
        out = [F.batch_norm(c, self.running_mean if self.training else None,
                            self.running_var if self.training else None, self.weight,
                            self.bias, True, self.momentum, self.eps) for c in chunks]
        return torch.cat(out, dim=0)


class GhostBatchNorm1d(_GhostBatchNorm):
    """Ghost batch norm over (N, C) or (N, C, L) input; see the module docstring.

    Args:
        num_features: C.
        ghost_batch_size: samples per ghost batch (consecutive slices of dim 0).
        eps: added to σ_B² under the square root.
        momentum: weight of the new ghost batch's statistics in the running update.
        affine: learn γ (``weight``) and β (``bias``); ``False``: none.
        track_running_stats: keep ``running_mean``/``running_var`` (else eval mode also
            uses ghost-batch statistics).
    """

    _dims = (2, 3)


class GhostBatchNorm2d(_GhostBatchNorm):
    """Ghost batch norm over (N, C, H, W) input, m = n_ghost·H·W values per channel;
    arguments as :class:`GhostBatchNorm1d`."""

    _dims = (4,)
