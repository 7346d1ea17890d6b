"""Folding an eval-mode batch norm into the preceding convolution or linear layer.

In eval mode batch norm is a per-channel affine map with constants, so after a layer
z = W∗x + c it can be absorbed into the layer (one op less at inference):

    y = γ·(z − μ)/sqrt(σ² + ε) + β = s·(W∗x) + (s·(c − μ) + β),    s = γ/sqrt(σ² + ε),

i.e. W' = s·W (output channel o scaled by s_o) and c' = s·(c − μ) + β, with c = 0 when the
layer has no bias — the new layer then *gets* one.  μ, σ² are the running statistics
(``running_var`` is the unbiased estimate PyTorch tracks), γ = 1 and β = 0 without affine
parameters.  Everything is computed in float64 and rounded once to the layer's dtype.

Output channels are dim 0 of ``Conv*d``/``Linear`` weights, (out, in/groups, *k) and
(out, in); ``ConvTranspose*d`` weights are (in, out/groups, *k), so there output channel
o = g·(out/groups) + j is column j of group g.  A ``Linear`` followed by ``BatchNorm1d``
is assumed to produce (N, features) activations, as ``torch.nn.utils.fusion`` assumes.
"""

import copy
import warnings

import torch
from torch import nn

BatchNormBase = nn.modules.batchnorm._BatchNorm         # torch's and ours (a subclass)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
FOLDABLE = CONVS + TRANSPOSED + (nn.Linear,)


def _out_channels(layer):
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _check_pair(layer, bn):
    if not isinstance(layer, FOLDABLE):
        raise TypeError(f"can fold into Conv1d/2d/3d, ConvTranspose1d/2d/3d or Linear, got "
                        f"{type(layer).__name__}")
    if not isinstance(bn, BatchNormBase):
        raise TypeError(f"expected a BatchNorm1d/2d/3d, got {type(bn).__name__}")
    if bn.training:
        raise ValueError(f"{type(bn).__name__} is in training mode: it normalizes with batch "
                         "statistics, which cannot be folded; call .eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__} has no running statistics "
                         "(track_running_stats=False): it normalizes with batch statistics")
    if _out_channels(layer) != bn.num_features:
        raise ValueError(f"{type(layer).__name__} has {_out_channels(layer)} output channels but "
                         f"{type(bn).__name__} normalizes {bn.num_features}")


def bn_scale_shift(bn):
    """(s, t), float64 (C,): eval-mode batch norm is y = s·z + t."""
    var = bn.running_var.detach().double()
    s = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.detach().double()
    t = -bn.running_mean.detach().double() * s
    if bn.bias is not None:
        t = t + bn.bias.detach().double()
    return s, t


def fold_bn_into(layer, bn):
    """A new layer computing ``bn(layer(x))`` for an eval-mode ``bn``: a deep copy of
    ``layer`` with weight s·W and bias s·c + t (a bias is added when ``layer`` has none).
    ``layer`` and ``bn`` are not modified.  Raises ``ValueError``/``TypeError`` for a
    training-mode or untracked ``bn``, channel mismatches and other layer types."""
    _check_pair(layer, bn)
    s, t = bn_scale_shift(bn)
    w = layer.weight.detach().double()
    if isinstance(layer, TRANSPOSED):                 # (in, out/groups, *k): group-wise columns
        g = layer.groups
        folded = (w.unflatten(0, (g, -1)) * s.view(g, 1, -1, *[1] * (w.ndim - 2))).flatten(0, 1)
    else:                                             # (out, ...): rows
        folded = w * s.view(-1, *[1] * (w.ndim - 1))
    c = 0.0 if layer.bias is None else layer.bias.detach().double()
    bias_dtype = layer.weight.dtype if layer.bias is None else layer.bias.dtype
    new = copy.deepcopy(layer)
    new.weight = nn.Parameter(folded.to(layer.weight.dtype), layer.weight.requires_grad)
    new.bias = nn.Parameter((s * c + t).to(device=layer.weight.device, dtype=bias_dtype),
                            layer.weight.requires_grad)
    return new


# ----------------------------------------------------------------------------- whole models


class _Tracer(torch.fx.Tracer):
    """Keeps every batch norm (ours too) and foldable layer a leaf of the traced graph."""

    def is_leaf_module(self, m, qualified_name):
        return isinstance(m, (BatchNormBase,) + FOLDABLE) or super().is_leaf_module(m, qualified_name)


def _traced_pairs(model):
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], BatchNormBase):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules[src.target], FOLDABLE)
                and len(src.users) == 1 and calls[src.target] == calls[node.target] == 1):
            pairs.append((src.target, node.target))
    return pairs


def _sequential_pairs(model):
    pairs = []
    for prefix, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            children = list(m.named_children())
            for (n1, a), (n2, b) in zip(children, children[1:]):
                if isinstance(a, FOLDABLE) and isinstance(b, BatchNormBase):
                    pairs.append(tuple(f"{prefix}.{n}" if prefix else n for n in (n1, n2)))
    return pairs


def find_foldable_pairs(model):
    """[(layer name, batch-norm name)] of the Conv/Linear → BatchNorm pairs of ``model``.

    Recognized: a batch norm whose input is the output of a Conv*d/ConvTranspose*d/Linear
    module that feeds nothing else, both called exactly once — found by tracing ``model``
    with ``torch.fx`` (so residual blocks written as ``self.bn1(self.conv1(x))`` count).  If
    ``model`` cannot be traced (data-dependent control flow), only consecutive children
    of ``nn.Sequential`` containers are recognized, with a warning.
    """
    try:
        return _traced_pairs(model)
    except Exception as exc:                        # noqa: BLE001 - any tracing failure
        warnings.warn(f"fold_batchnorms: could not trace {type(model).__name__} with torch.fx "
                      f"({type(exc).__name__}: {exc}); only Conv/Linear → BatchNorm pairs "
                      "adjacent in nn.Sequential are folded", stacklevel=3)
        return _sequential_pairs(model)


def fold_batchnorms(model, pairs=None):
    """Fold every Conv/Linear → eval-mode BatchNorm pair of ``model`` in place: the layer
    is replaced by :func:`fold_bn_into`'s result and the batch norm by ``nn.Identity``.

    ``pairs``: [(layer name, batch-norm name)] to fold; by default
    :func:`find_foldable_pairs`.  Returns ``model``, whose eval-mode output is unchanged.
    """
    pairs = find_foldable_pairs(model) if pairs is None else list(pairs)
    folded = [(name, fold_bn_into(model.get_submodule(name), model.get_submodule(bn_name)), bn_name)
              for name, bn_name in pairs]           # all checks before the first change
    for name, layer, bn_name in folded:
        model.set_submodule(name, layer)
        model.set_submodule(bn_name, nn.Identity())
    return model
