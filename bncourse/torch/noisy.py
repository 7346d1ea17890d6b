"""A random, moving distribution shift to put after batch norm: the "noisy BN" experiment
of Santurkar, Tsipras, Ilyas & Mądry (2018), "How does batch normalization help
optimization?".

Batch norm fixes each channel's mean and variance.  If it helped *because* it keeps a
layer's input distribution stable (no internal covariate shift), destroying that stability
right after it should hurt.  :class:`DistributionShift` does this: in training mode, at every
forward call (every step), it draws a new per-channel scale s and shift b and returns
y = s·x + b, so the next layer sees a distribution whose mean and variance change at every
step.  The draws come from the module's own ``torch.Generator``, seeded at construction, so
runs are reproducible and do not consume the global RNG.  In eval mode it is the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DistributionShift"]


class DistributionShift(nn.Module):
    """y = s·x + b with s ~ U(1, max_scale) and b ~ U(−max_shift, max_shift) per channel
    (dim 1), drawn anew at each training-mode call; identity in eval mode.

    Args:
        num_features: C, the channels on dim 1 of (N, C, *spatial) input.
        max_shift: half-width of the uniform shift (>= 0).
        max_scale: upper end of the uniform scale (>= 1).
        seed: seed of the module's generator (the sequence of draws).

    Attributes ``last_scale`` and ``last_shift`` (C,) hold the latest draw (None before).
    Not differentiated: s and b are noise, not parameters.
    """

    def __init__(self, num_features: int, max_shift: float = 1.0, max_scale: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift!r}")
        if max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale!r}")
        self.num_features = num_features
        self.max_shift = float(max_shift)
        self.max_scale = float(max_scale)
        self.generator = torch.Generator().manual_seed(seed)
        self.last_scale: Tensor | None = None
        self.last_shift: Tensor | None = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, max_shift={self.max_shift}, max_scale={self.max_scale}"

    def forward(self, input: Tensor) -> Tensor:  # (N, C, *spatial)
        if input.dim() < 2 or input.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}, ...) input, "
                             f"got shape {tuple(input.shape)}")
        if not self.training:
            return input
        c = self.num_features
        u = torch.rand(2, c, generator=self.generator, dtype=torch.float64)
        scale = (1.0 + (self.max_scale - 1.0) * u[0]).to(input.dtype)
        shift = (self.max_shift * (2.0 * u[1] - 1.0)).to(input.dtype)
        self.last_scale, self.last_shift = scale, shift
        view = (1, c) + (1,) * (input.dim() - 2)  # broadcast over batch and spatial dims
        return input * scale.view(view) + shift.view(view)
