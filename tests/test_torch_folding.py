"""Folding eval-mode batch norm into the preceding Conv/Linear: the folded layer equals
layer → BN, agrees with torch.nn.utils.fusion, and whole models fold without changing."""

import copy
import warnings

from conftest import assert_close, optional
import pytest

torch = optional("torch")
from torch import nn  # noqa: E402
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval  # noqa: E402
import torch_models  # noqa: E402

import bncourse.torch as bt  # noqa: E402

F64 = torch.float64
LAYERS = {   # name: (layer, batch-norm class, input shape)
    "conv1d": (lambda bias: nn.Conv1d(4, 6, 3, bias=bias), nn.BatchNorm1d, (5, 4, 9)),
    "conv2d": (lambda bias: nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=bias), nn.BatchNorm2d, (3, 4, 7, 6)),
    "conv2d_groups": (lambda bias: nn.Conv2d(4, 6, 3, groups=2, bias=bias), nn.BatchNorm2d, (3, 4, 7, 6)),
    "conv3d": (lambda bias: nn.Conv3d(2, 4, 2, bias=bias), nn.BatchNorm3d, (2, 2, 4, 3, 5)),
    "conv_transpose2d": (lambda bias: nn.ConvTranspose2d(4, 6, 3, stride=2, bias=bias), nn.BatchNorm2d, (3, 4, 5, 5)),
    "conv_transpose2d_groups": (lambda bias: nn.ConvTranspose2d(4, 6, 3, groups=2, bias=bias), nn.BatchNorm2d, (3, 4, 5, 5)),
    "linear": (lambda bias: nn.Linear(7, 6, bias=bias), nn.BatchNorm1d, (9, 7)),
}


def _trained_bn(bn_cls, C, affine=True, dtype=F64):
    """An eval-mode batch norm with non-trivial running statistics and parameters."""
    bn = bn_cls(C, affine=affine, dtype=dtype)
    with torch.no_grad():
        bn.running_mean.uniform_(-2, 2)
        bn.running_var.uniform_(0.1, 3)
        if affine:
            bn.weight.uniform_(-1.5, 1.5)
            bn.bias.uniform_(-1, 1)
    return bn.eval()


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
def test_folded_layer_equals_layer_then_bn(kind, bias, affine):
    make, bn_cls, shape = LAYERS[kind]
    layer = make(bias).to(F64).eval()
    bn = _trained_bn(bn_cls, 6 if kind != "conv3d" else 4, affine)
    x = torch.randn(shape, dtype=F64)
    folded = bt.fold_bn_into(layer, bn)
    assert type(folded) is type(layer) and folded.bias is not None
    assert (layer.bias is None) == (not bias)                     # the original is untouched
    with torch.no_grad():
        assert_close(folded(x).numpy(), bn(layer(x)).numpy(), "float64")
    # torch's utilities raise for grouped transposed convs and for Linear + non-affine BN
    if not kind.endswith("transpose2d_groups") and (affine or kind != "linear"):
        if kind == "linear":
            theirs = fuse_linear_bn_eval(layer, bn)
        else:
            theirs = fuse_conv_bn_eval(layer, bn, transpose=kind.startswith("conv_transpose"))
        assert_close(folded.weight.detach().numpy(), theirs.weight.detach().numpy(), "float64")
        assert_close(folded.bias.detach().numpy(), theirs.bias.detach().numpy(), "float64")


def test_float32_folding_is_computed_in_float64():
    layer = nn.Conv2d(8, 16, 3).eval()
    bn = _trained_bn(nn.BatchNorm2d, 16, dtype=torch.float32)
    with torch.no_grad():
        bn.running_mean.add_(1e3)                      # the shift s·(c − μ) is large
    exact = bt.fold_bn_into(layer.double(), copy.deepcopy(bn).double())
    ours, theirs = bt.fold_bn_into(layer.float(), bn), fuse_conv_bn_eval(layer.float(), bn)
    assert ours.weight.dtype == ours.bias.dtype == torch.float32
    for p in ("weight", "bias"):
        e = getattr(exact, p).detach()
        err_ours = (getattr(ours, p).detach().double() - e).abs().max()
        err_theirs = (getattr(theirs, p).detach().double() - e).abs().max()
        assert err_ours <= 0.5 * torch.finfo(torch.float32).eps * e.abs().max()   # one rounding
        assert err_ours <= err_theirs


def test_fold_errors():
    conv = nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="training mode"):
        bt.fold_bn_into(conv, nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="no running statistics"):
        bt.fold_bn_into(conv, nn.BatchNorm2d(4, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="4 output channels but BatchNorm2d normalizes 5"):
        bt.fold_bn_into(conv, nn.BatchNorm2d(5).eval())
    with pytest.raises(TypeError, match="got ReLU"):
        bt.fold_bn_into(nn.ReLU(), nn.BatchNorm2d(4).eval())


@pytest.mark.parametrize("kind", ["resnet", "mlp"])
@pytest.mark.parametrize("convert", [False, True], ids=["torch_bn", "our_bn"])
def test_fold_whole_models(kind, convert):
    model = getattr(torch_models, kind)()
    if convert:
        bt.convert_batchnorm(model)
    with torch.no_grad():
        for x, _ in torch_models.batches(kind, 3):              # running statistics ≠ init
            model(x)
    model.eval()
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    pairs = bt.find_foldable_pairs(model)
    assert len(pairs) == n_bn                                # every BN here follows a layer
    x, _ = torch_models.batches(kind, 1, seed=5)[0]
    with torch.no_grad():
        expected = model(x)
        folded = bt.fold_batchnorms(copy.deepcopy(model))
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
        assert_close(folded(x).numpy(), expected.numpy(), "float64")


class _Branchy(nn.Module):
    """conv → bn where the conv output is also used elsewhere: not foldable; and a BN after a
    ReLU: not foldable; and a linear → bn inside a Python branch (untraceable)."""

    def __init__(self, branch=False):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        self.bn_after_relu = nn.BatchNorm2d(3)
        self.seq = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.branch = branch

    def forward(self, x):
        z = self.conv(x)
        y = self.bn(z) + z
        y = self.bn_after_relu(torch.relu(y))
        if self.branch and x.sum() > 0:                       # data-dependent: fx cannot trace
            y = -y
        return self.seq(y)


def test_only_true_pairs_are_folded():
    model = _Branchy().eval()
    assert bt.find_foldable_pairs(model) == [("seq.0", "seq.1")]
    untraceable = _Branchy(branch=True).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert bt.find_foldable_pairs(untraceable) == [("seq.0", "seq.1")]
    assert any("could not trace" in str(w.message) for w in caught)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        expected = model(x)
        assert_close(bt.fold_batchnorms(model)(x).numpy(), expected.numpy(), "float32")
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.seq[1], nn.Identity)
