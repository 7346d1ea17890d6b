"""Measurements behind "why batch norm helps" (chapter 15): how smooth the loss is along
the gradient, per-layer activation and gradient statistics, and the effective learning rate
of scale-invariant weights.  Needs torch.

Smoothness along the gradient (Santurkar et al. 2018, §3.1).  At parameters w with gradient
g = ∇L(w), step to w − η g for each η in ``etas`` and record

- the losses L(w − η g): their spread, max − min, is the *loss range* ("variation of the loss");
- the gradient change ‖∇L(w) − ∇L(w − η g)‖: its maximum is the *gradient predictiveness*
  (small: the gradient at w still describes the gradient a step away);
- ‖∇L(w) − ∇L(w − η g)‖ / ‖η g‖: its maximum is the *effective β-smoothness*, a local
  Lipschitz constant of the gradient along g.

For a quadratic L = ½ wᵀAw these are known in closed form (g = Aw, the change is η·A g), which
is how the tests check them.

Effective learning rate (van Laarhoven 2017; Hoffer et al. 2018).  If L(αw) = L(w) for all
α > 0 (w feeds batch norm), then ⟨∇L(w), w⟩ = 0 and ∇L(αw) = ∇L(w)/α, so an SGD step of size
η on w moves its direction like a step of η / ‖w‖² on the unit sphere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["GradientProbe", "LayerStats", "effective_learning_rate", "layer_statistics",
           "probe_along_gradient"]


@dataclass(frozen=True)
class GradientProbe:
    """What :func:`probe_along_gradient` measured; all plain floats.

    etas: the step sizes; losses[k] = L(w − etas[k]·g); grad_changes[k] =
    ‖g − ∇L(w − etas[k]·g)‖; grad_norm = ‖g‖; loss0 = L(w).
    """

    etas: tuple[float, ...]
    loss0: float
    grad_norm: float
    losses: tuple[float, ...]
    grad_changes: tuple[float, ...]

    @property
    def loss_range(self) -> float:
        """max − min of the losses along the gradient, L(w) included."""
        values = (self.loss0,) + self.losses
        return max(values) - min(values)

    @property
    def gradient_predictiveness(self) -> float:
        """max over η of ‖∇L(w) − ∇L(w − η g)‖ (smaller: more predictive)."""
        return max(self.grad_changes)

    @property
    def beta_smoothness(self) -> float:
        """max over η of ‖∇L(w) − ∇L(w − η g)‖ / (η‖g‖)."""
        return max(d / (eta * self.grad_norm) for d, eta in zip(self.grad_changes, self.etas))


def _flat_grad(loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads)])


def probe_along_gradient(loss_fn: Callable[[], Tensor], params: Iterable[Tensor],
                         etas: Sequence[float]) -> GradientProbe:
    """Measure the loss and its gradient along the gradient direction (module docstring).

    Args:
        loss_fn: computes the scalar loss from the current values of ``params`` (the same
            batch every call: fix the data and, for batch norm, call it in training mode so
            the statistics are the batch's; running statistics may change, nothing else).
        params: the tensors w (requires_grad); they are restored on return.
        etas: positive step sizes.
    Returns:
        a :class:`GradientProbe`.
    """
    params = list(params)
    etas = tuple(float(e) for e in etas)
    if not etas or min(etas) <= 0:
        raise ValueError(f"etas must be a non-empty sequence of positive steps, got {etas}")
    saved = [p.detach().clone() for p in params]
    loss0 = loss_fn()
    g = _flat_grad(loss0, params)
    losses, changes = [], []
    try:
        for eta in etas:
            with torch.no_grad():
                offset = 0
                for p, w in zip(params, saved):
                    n = p.numel()
                    p.copy_(w - eta * g[offset:offset + n].view_as(p))
                    offset += n
            loss = loss_fn()
            losses.append(float(loss.detach()))
            changes.append(float(torch.linalg.vector_norm(_flat_grad(loss, params) - g)))
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
    return GradientProbe(etas, float(loss0.detach()), float(torch.linalg.vector_norm(g)),
                         tuple(losses), tuple(changes))


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one module's output and weight gradient, from one forward/backward.

    mean, std: of the module's output over all its values; saturation: the fraction of
    outputs with |value| >= ``threshold`` (for a tanh output, the saturated units);
    grad_norm: ‖∂L/∂weight‖ (Frobenius), or nan when the module has no weight.
    """

    name: str
    mean: float
    std: float
    saturation: float
    grad_norm: float


def layer_statistics(model: nn.Module, modules: Sequence[tuple[str, nn.Module]],
                     loss_fn: Callable[[nn.Module], Tensor],
                     threshold: float = 0.99) -> list[LayerStats]:
    """Run ``loss_fn(model)`` forward and backward once, recording each listed module's
    output (forward hooks, removed afterwards) and its weight's gradient.

    Args:
        model: the network (its parameters' ``.grad`` are zeroed first, then hold this
            loss's gradients).
        modules: (name, module) pairs, e.g. ``[(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear)]``.
        loss_fn: computes the scalar loss with ``model`` (a fixed batch).
        threshold: |output| at or above which a value counts as saturated.
    """
    outputs: dict[str, Tensor] = {}
    handles = []
    for name, module in modules:
        def hook(_m: nn.Module, _inp: object, out: Tensor, name: str = name) -> None:
            outputs[name] = out.detach()
        handles.append(module.register_forward_hook(hook))
    try:
        model.zero_grad(set_to_none=True)
        loss_fn(model).backward()
    finally:
        for h in handles:
            h.remove()
    stats = []
    for name, module in modules:
        out = outputs[name]
        weight = getattr(module, "weight", None)
        grad = None if weight is None else weight.grad
        stats.append(LayerStats(name, float(out.mean()), float(out.std()),
                                float((out.abs() >= threshold).double().mean()),
                                float("nan") if grad is None
                                else float(torch.linalg.vector_norm(grad))))
    return stats


def effective_learning_rate(lr: float, weight: Tensor) -> float:
    """η / ‖w‖²: the step size on the direction of a scale-invariant weight w (all of w, or
    pass one unit's row for a per-unit value)."""
    norm2 = float(torch.linalg.vector_norm(weight.detach()) ** 2)
    if norm2 == 0:
        raise ValueError("the weight is zero: its direction, and the effective rate, are undefined")
    return lr / norm2
