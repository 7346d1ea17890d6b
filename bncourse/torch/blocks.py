"""Building blocks for batch norm inside real networks, and for doing without it.

* :class:`ResidualBlock` — a basic two-convolution residual block, post-activation
  (He et al. 2016a: conv → BN → ReLU → conv → BN, add, ReLU) or pre-activation (He et al.
  2016b: BN → ReLU → conv → BN → ReLU → conv, add), with ``zero_init_last``: the block starts
  as the identity (Goyal et al. 2017 zero the γ of the last BN of the branch).
* :class:`SkipInit` — ``x + α·branch(x)`` with a scalar α initialised to 0 (De & Smith 2020):
  the identity at initialisation, without any normalization.
* :func:`standardize_weight` and :class:`WSConv2d` — Weight Standardization (Qiao et al.
  2019): each filter of a convolution is standardized to mean 0, variance 1 over its
  fan-in before use; pair it with GroupNorm.
* :class:`FilterResponseNorm2d` and :class:`TLU` — Filter Response Normalization with the
  Thresholded Linear Unit (Singh & Krishnan 2020): per sample and channel,
  ``y = γ·x/sqrt(ν² + ε) + β`` with ``ν² = mean(x²)`` over H·W (no mean subtracted, no
  batch statistics), then ``max(y, τ)``.
* :func:`adaptive_grad_clip_` — unit-wise adaptive gradient clipping of NF-Nets (Brock et
  al. 2021), in place.

None of them keeps running statistics, so none has a ``momentum``: only the batch norms
inside :class:`ResidualBlock` do (``torch.nn.BatchNorm2d``'s: biased variance to normalize,
unbiased for ``running_var``, ``momentum`` the weight of the new batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
import torch.nn.functional as F

__all__ = ["ResidualBlock", "SkipInit", "standardize_weight", "WSConv2d", "FilterResponseNorm2d",
           "TLU", "adaptive_grad_clip_"]


class ResidualBlock(nn.Module):
    """A basic residual block on (N, C, H, W) with C channels in and out (stride 1).

    ``preact=False`` (post-activation): ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``.
    ``preact=True`` (pre-activation): ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``.

    Args:
        channels: C.
        preact: the ordering above.
        zero_init_last: start the residual branch at exactly 0. Post-activation: the γ
            (``weight``) of ``bn2``, the last BN of the branch, is 0 (Goyal et al. 2017), so
            the block computes ``relu(x)`` — the identity on the non-negative inputs a
            previous ReLU produces. Pre-activation: the branch ends in ``conv2``, whose
            weight is zeroed, so the block is the identity exactly.
        norm: the normalization constructor, ``norm(C)`` (default ``nn.BatchNorm2d``).
    """

    def __init__(self, channels: int, *, preact: bool = False, zero_init_last: bool = False,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"expected channels >= 1, got {channels}")
        self.preact = preact
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm(channels)
        if zero_init_last:
            with torch.no_grad():
                if preact:
                    self.conv2.weight.zero_()
                else:
                    w = getattr(self.bn2, "weight", None)
                    if not isinstance(w, Tensor):
                        raise ValueError("zero_init_last needs a norm with a weight (γ)")
                    w.zero_()

    def forward(self, x: Tensor) -> Tensor:
        if self.preact:   # BN -> ReLU -> conv, twice; the shortcut is untouched
            h = self.conv1(F.relu(self.bn1(x)))
            return x + self.conv2(F.relu(self.bn2(h)))
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


class SkipInit(nn.Module):
    """``x + α·branch(x)``, α a learned scalar initialised to ``alpha`` (0: De & Smith 2020).

    At α = 0 the block is the identity exactly, whatever the branch; the gradient reaching
    α is ``sum(grad_out · branch(x))``, so α (and then the branch) starts learning at once.
    """

    def __init__(self, branch: nn.Module, alpha: float = 0.0) -> None:
        super().__init__()
        self.branch = branch
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.alpha * self.branch(x)


def standardize_weight(weight: Tensor, eps: float = 1e-5) -> Tensor:
    """Weight Standardization: each output filter ``weight[o]`` minus its mean, divided by
    ``sqrt(var + eps)``, mean and *biased* variance over the fan-in (all dims but 0).

    Shapes: (O, I, *kernel) → the same. Differentiable (autograd through the statistics).
    """
    if weight.dim() < 2:
        raise ValueError(f"expected a weight with 2 or more dims (out, in, ...), got {weight.dim()}D")
    dims = tuple(range(1, weight.dim()))
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, unbiased=False, keepdim=True)   # biased: divide by the fan-in
    return (weight - mean) / torch.sqrt(var + eps)


class WSConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardized (:func:`standardize_weight`) at every call.

    Same constructor as ``nn.Conv2d`` plus ``ws_eps`` (the eps of the standardization). The
    stored ``weight`` is the raw parameter; the convolution uses its standardized version,
    so the output does not change when a filter is scaled or shifted.
    """

    def __init__(self, *args: object, ws_eps: float = 1e-5, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ws_eps = ws_eps

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, standardize_weight(self.weight, self.ws_eps), self.bias)


class FilterResponseNorm2d(nn.Module):
    """Filter Response Normalization on (N, C, H, W), per sample n and channel c:

        ν² = mean over (H, W) of x²,     y = γ_c · x / sqrt(ν² + ε) + β_c

    No mean is subtracted and nothing is shared across the batch (so it works at batch
    size 1); follow it with :class:`TLU`. With ``learnable_eps=True``, ε = ``eps`` +
    |ε_learned| with ε_learned a per-channel parameter initialised to ``eps_init`` (the
    paper's learned ε, which matters when H·W is small, e.g. 1×1).

    Args:
        num_features: C.
        eps: ε (the floor of ε when it is learned).
        learnable_eps: learn the extra |ε_learned|.
        eps_init: initial ε_learned.
    """

    def __init__(self, num_features: int, eps: float = 1e-6, *, learnable_eps: bool = False,
                 eps_init: float = 1e-4) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"expected num_features >= 1, got {num_features}")
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.eps_learned: nn.Parameter | None = (
            nn.Parameter(torch.full((num_features,), float(eps_init))) if learnable_eps else None)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (N, C, H, W), got {x.dim()}D")
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)          # (N, C, 1, 1)
        eps: Tensor | float = self.eps
        if self.eps_learned is not None:
            eps = self.eps + self.eps_learned.abs().view(1, -1, 1, 1)
        x = x * torch.rsqrt(nu2 + eps)
        return self.weight.view(1, -1, 1, 1) * x + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, learnable_eps={self.eps_learned is not None}"


class TLU(nn.Module):
    """Thresholded Linear Unit: ``max(x, τ_c)``, τ a learned per-channel threshold (init 0).

    With τ = 0 it is the ReLU; a learned τ lets the FRN output, which is not centred, keep
    its negative part where useful. Input (N, C, ...).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.tau = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        tau = self.tau.view((1, -1) + (1,) * (x.dim() - 2))
        return torch.maximum(x, tau)


def _unitwise_norm(t: Tensor) -> Tensor:
    # one norm per output unit (dim 0) for matrices and filters; one for a vector or scalar
    if t.dim() <= 1:
        return t.norm()
    return torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())), keepdim=True)


@torch.no_grad()
def adaptive_grad_clip_(parameters: Iterable[Tensor] | Tensor, clipping: float = 0.01,
                        eps: float = 1e-3) -> int:
    """Unit-wise adaptive gradient clipping (Brock et al. 2021), in place.

    For each unit i of each parameter W (a row of a Linear weight, a filter of a conv; a
    bias or gain vector is one unit), with G its gradient:

        if ‖G_i‖ / max(‖W_i‖, eps) > clipping:   G_i ← clipping · max(‖W_i‖, eps) / ‖G_i‖ · G_i

    so no step changes a unit by more than the fraction ``clipping`` of its norm (``eps``
    keeps zero-initialised units moving). Parameters without a gradient are skipped.

    Returns:
        the number of units whose gradient was clipped.
    """
    if clipping <= 0:
        raise ValueError(f"expected clipping > 0, got {clipping}")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    clipped = 0
    for p in params:
        if p.grad is None:
            continue
        max_norm = _unitwise_norm(p.detach()).clamp_min(eps) * clipping
        g_norm = _unitwise_norm(p.grad)
        too_big = g_norm > max_norm
        scale = torch.where(too_big, max_norm / g_norm.clamp_min(1e-6), torch.ones_like(g_norm))
        p.grad.mul_(scale)
        clipped += int(too_big.sum())
    return clipped
