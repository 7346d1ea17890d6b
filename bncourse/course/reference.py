"""Batch norm as a computation graph, one node at a time: the derivation the book follows.

Forward, for a channel's m values (all arrays keep their axes, statistics with keepdims):

    node          value                         local gradient used in backward
    1 mean        μ  = (1/m) Σ x                 ∂μ/∂x = 1/m
    2 centered    xc = x − μ                     ∂xc/∂x = 1,  ∂xc/∂μ = −1
    3 squared     sq = xc²                       ∂sq/∂xc = 2·xc
    4 variance    σ² = (1/m) Σ sq   (biased)     ∂σ²/∂sq = 1/m
    5 std         σ̂  = sqrt(σ² + ε)              ∂σ̂/∂σ² = 1/(2σ̂)
    6 inv_std     iσ = 1/σ̂                       ∂iσ/∂σ̂ = −1/σ̂²
    7 xhat        x̂  = xc · iσ                   ∂x̂/∂xc = iσ,  ∂x̂/∂iσ = xc
    8 scaled      s  = γ · x̂                     ∂s/∂x̂ = γ,  ∂s/∂γ = x̂
    9 out         y  = s + β                     ∂y/∂s = 1,  ∂y/∂β = 1

:func:`backward` walks the nodes in reverse, multiplying upstream gradients by these local
ones and summing over every path (xc feeds both x̂ and sq; x feeds xc directly and through μ).
Collapsing the walk gives the closed form that the backends implement,

    ∂L/∂x = (γ/(m·σ̂)) · (m·dy − Σ dy − x̂ · Σ(dy·x̂)),

and comparing the two is a test and a chapter.  Everything here runs in float64 on any
array-API namespace; it is written for reading, not for speed.
"""

import math

from ..core.closed_form import batch_axes, channel_view
from ..core.xp import array_namespace


def forward(x, gamma=None, beta=None, eps=1e-5):
    """Staged training-mode batch norm.  x: (N, C, *spatial); gamma, beta: (C,) or None.

    Returns ``(y, nodes)``: y in float64 and a dict of every node above by name (plus the
    inputs and ``m``), which :func:`backward` consumes.
    """
    xp = array_namespace(x, gamma, beta)
    x = xp.astype(x, xp.float64)
    axes = batch_axes(x.ndim)
    m = math.prod(x.shape[a] for a in axes)
    one, zero = xp.ones((1,) * x.ndim, dtype=xp.float64), xp.zeros((1,) * x.ndim, dtype=xp.float64)
    g = one if gamma is None else channel_view(xp.astype(gamma, xp.float64), x.ndim, xp)
    b = zero if beta is None else channel_view(xp.astype(beta, xp.float64), x.ndim, xp)

    mean = xp.sum(x, axis=axes, keepdims=True) / m        # 1
    centered = x - mean                                     # 2
    squared = centered * centered                           # 3
    var = xp.sum(squared, axis=axes, keepdims=True) / m     # 4
    std = xp.sqrt(var + eps)                                # 5
    inv_std = 1.0 / std                                     # 6
    xhat = centered * inv_std                               # 7
    scaled = g * xhat                                       # 8
    out = scaled + b                                        # 9
    nodes = dict(x=x, gamma=g, beta=b, m=m, axes=axes, mean=mean, centered=centered,
                 squared=squared, var=var, std=std, inv_std=inv_std, xhat=xhat,
                 scaled=scaled, out=out)
    return out, nodes


def backward(dy, nodes):
    """Reverse pass through the staged graph.

    Returns ``(dx, dgamma, dbeta, grads)`` in float64, with dgamma/dbeta of shape (C,) and
    ``grads`` the gradient of the loss with respect to every node, by node name.
    """
    xp = array_namespace(dy)
    n = nodes
    axes, m = n["axes"], n["m"]
    dy = xp.astype(dy, xp.float64)
    sum_ = lambda a: xp.sum(a, axis=axes, keepdims=True)
    d = {"out": dy}

    d["beta"] = sum_(dy)                                   # 9: y = s + β
    d["scaled"] = dy
    d["gamma"] = sum_(d["scaled"] * n["xhat"])             # 8: s = γ·x̂
    d["xhat"] = d["scaled"] * n["gamma"]
    d["inv_std"] = sum_(d["xhat"] * n["centered"])         # 7: x̂ = xc·iσ
    dcentered_direct = d["xhat"] * n["inv_std"]
    d["std"] = -d["inv_std"] / (n["std"] * n["std"])       # 6: iσ = 1/σ̂
    d["var"] = d["std"] / (2.0 * n["std"])                 # 5: σ̂ = sqrt(σ² + ε)
    d["squared"] = d["var"] / m * xp.ones_like(n["squared"])   # 4: σ² = mean(sq)
    dcentered_via_sq = 2.0 * n["centered"] * d["squared"]  # 3: sq = xc²
    d["centered"] = dcentered_direct + dcentered_via_sq    # xc feeds x̂ and sq
    d["mean"] = -sum_(d["centered"])                       # 2: xc = x − μ
    d["x"] = d["centered"] + d["mean"] / m                 # 1: μ = mean(x); x feeds xc and μ

    flat = lambda a: xp.reshape(a, (-1,))
    return d["x"], flat(d["gamma"]), flat(d["beta"]), d


def closed_form_backward(dy, nodes):
    """The collapsed gradient (γ/(m·σ̂))·(m·dy − Σdy − x̂·Σ(dy·x̂)), from the same nodes."""
    xp = array_namespace(dy)
    axes, m = nodes["axes"], nodes["m"]
    dy = xp.astype(dy, xp.float64)
    xhat = nodes["xhat"]
    sum_dy = xp.sum(dy, axis=axes, keepdims=True)
    sum_dy_xhat = xp.sum(dy * xhat, axis=axes, keepdims=True)
    return nodes["gamma"] * nodes["inv_std"] / m * (m * dy - sum_dy - xhat * sum_dy_xhat)
