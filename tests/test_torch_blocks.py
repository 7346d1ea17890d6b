"""bncourse.torch.blocks: residual blocks (zero-init, pre-activation), SkipInit, Weight
Standardization, FRN + TLU and AGC, against torch equivalents and direct float64 formulas."""

from conftest import optional
import pytest

torch = optional("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bncourse.torch as bt  # noqa: E402

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preact", [False, True])
def test_zero_init_block_is_identity_at_init(preact):
    torch.manual_seed(0)
    block = bt.ResidualBlock(4, preact=preact, zero_init_last=True).to(F64).train()
    x = torch.rand(3, 4, 5, 5, dtype=F64, generator=_gen())      # non-negative, as after a ReLU
    assert torch.equal(block(x), x)
    block.eval()
    assert torch.equal(block(x), x)


def test_zero_init_post_act_is_relu_on_signed_input():
    torch.manual_seed(0)
    block = bt.ResidualBlock(3, zero_init_last=True).to(F64)
    x = torch.randn(2, 3, 4, 4, dtype=F64, generator=_gen(1))
    assert torch.equal(block(x), F.relu(x))


@pytest.mark.parametrize("preact", [False, True])
def test_residual_block_matches_its_formula(preact):
    torch.manual_seed(0)
    block = bt.ResidualBlock(3, preact=preact).to(F64)
    x = torch.randn(2, 3, 4, 4, dtype=F64, generator=_gen(2))
    b = block
    if preact:
        want = x + b.conv2(F.relu(b.bn2(b.conv1(F.relu(b.bn1(x))))))
    else:
        want = F.relu(x + b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x))))))
    torch.testing.assert_close(block(x), want, rtol=1e-14, atol=1e-14)
    assert not torch.equal(block(x), F.relu(x))


def test_residual_block_errors():
    with pytest.raises(ValueError, match="channels >= 1"):
        bt.ResidualBlock(0)
    with pytest.raises(ValueError, match="weight"):
        bt.ResidualBlock(2, zero_init_last=True, norm=lambda c: nn.BatchNorm2d(c, affine=False))


def test_skipinit_identity_and_alpha_gradient():
    branch = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5)).to(F64)
    block = bt.SkipInit(branch).to(F64)
    x = torch.randn(4, 5, dtype=F64, generator=_gen(3))
    assert torch.equal(block(x), x)
    g = torch.randn(4, 5, dtype=F64, generator=_gen(4))
    block(x).backward(g)
    torch.testing.assert_close(block.alpha.grad, (g * branch(x)).sum().detach())


def test_standardize_weight_statistics_and_conv():
    w = 3 + 2 * torch.randn(6, 4, 3, 3, dtype=F64, generator=_gen(5))
    ws = bt.standardize_weight(w, eps=0.0)
    torch.testing.assert_close(ws.mean(dim=(1, 2, 3)), torch.zeros(6, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(ws.var(dim=(1, 2, 3), unbiased=False), torch.ones(6, dtype=F64))
    # against F.conv2d on a manually standardized weight
    conv = bt.WSConv2d(4, 6, 3, padding=1, bias=True, ws_eps=1e-5).to(F64)
    x = torch.randn(2, 4, 7, 7, dtype=F64, generator=_gen(6))
    wt = conv.weight.detach()
    mean = wt.mean(dim=(1, 2, 3), keepdim=True)
    var = ((wt - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    manual = F.conv2d(x, (wt - mean) / torch.sqrt(var + 1e-5), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), manual, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="2 or more dims"):
        bt.standardize_weight(torch.ones(3))


def test_ws_conv_invariant_to_filter_affine():
    conv = bt.WSConv2d(3, 5, 3, bias=False, ws_eps=0.0).to(F64)
    x = torch.randn(2, 3, 6, 6, dtype=F64, generator=_gen(7))
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(0.5)
    torch.testing.assert_close(conv(x), y, rtol=1e-12, atol=1e-12)


def test_ws_gn_block_matches_torch_group_norm():
    # WS conv then bncourse's GroupNorm = the same conv with torch's GroupNorm
    conv = bt.WSConv2d(3, 8, 3, padding=1, bias=False).to(F64)
    x = torch.randn(2, 3, 5, 5, dtype=F64, generator=_gen(8))
    ours = bt.GroupNorm(4, 8).to(F64)(conv(x))
    theirs = nn.GroupNorm(4, 8).to(F64)(conv(x))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def _frn_formula(x, gamma, beta, eps):
    nu2 = (x ** 2).mean(dim=(2, 3), keepdim=True)
    return gamma.view(1, -1, 1, 1) * x / torch.sqrt(nu2 + eps) + beta.view(1, -1, 1, 1)


@pytest.mark.parametrize("learnable_eps", [False, True])
def test_frn_matches_formula(learnable_eps):
    frn = bt.FilterResponseNorm2d(4, eps=1e-6, learnable_eps=learnable_eps, eps_init=-0.3).to(F64)
    with torch.no_grad():
        frn.weight.uniform_(0.5, 1.5)
        frn.bias.uniform_(-1, 1)
        if learnable_eps:
            frn.eps_learned.fill_(-0.3)                         # in float64: the sign is dropped
    x = torch.randn(3, 4, 2, 2, dtype=F64, generator=_gen(9))
    eps = 1e-6 + (0.3 if learnable_eps else 0.0)     # eps floor + |eps_learned|
    torch.testing.assert_close(frn(x), _frn_formula(x, frn.weight, frn.bias, eps), rtol=1e-13, atol=1e-13)
    # per sample: batch size 1 gives the same rows
    torch.testing.assert_close(frn(x[1:2]), frn(x)[1:2], rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="4D"):
        frn(x[0])


def test_tlu_is_max_with_threshold():
    tlu = bt.TLU(3).to(F64)
    with torch.no_grad():
        tlu.tau.copy_(torch.tensor([-1.0, 0.0, 0.5], dtype=F64))
    x = torch.randn(2, 3, 4, dtype=F64, generator=_gen(10))
    want = torch.maximum(x, tlu.tau.view(1, 3, 1))
    assert torch.equal(tlu(x), want)
    assert torch.equal(bt.TLU(3).to(F64)(x), F.relu(x))


def test_gradcheck_custom_pieces():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 3, dtype=F64, requires_grad=True)
    conv = bt.WSConv2d(3, 4, 2, bias=True).to(F64)
    frn = bt.FilterResponseNorm2d(3, learnable_eps=True, eps_init=0.1).to(F64)
    tlu = bt.TLU(3).to(F64)
    with torch.no_grad():
        tlu.tau.fill_(-0.2)
    assert torch.autograd.gradcheck(lambda x, w: F.conv2d(x, bt.standardize_weight(w), conv.bias),
                                    (x, conv.weight))
    assert torch.autograd.gradcheck(lambda x, g, e: bt.FilterResponseNorm2d.forward(
        _FRNView(g, e), x), (x, frn.weight, frn.eps_learned))
    assert torch.autograd.gradcheck(lambda x, t: torch.maximum(x, t.view(1, 3, 1, 1)), (x, tlu.tau))


class _FRNView(nn.Module):
    # an FRN whose γ and ε_learned are given tensors (so gradcheck can perturb them)
    def __init__(self, weight, eps_learned):
        super().__init__()
        self.weight, self.eps_learned, self.eps = weight, eps_learned, 1e-6
        self.bias = torch.zeros_like(weight)


def _agc_reference(w, g, clipping, eps):
    # the paper's rule, unit by unit, in float64
    out = g.clone()
    units = [(slice(None),)] if w.dim() <= 1 else [(i,) for i in range(w.shape[0])]
    clipped = 0
    for u in units:
        wn = max(float(w[u].norm()), eps)
        gn = float(g[u].norm())
        if gn / wn > clipping:
            out[u] = g[u] * (clipping * wn / gn)
            clipped += 1
    return out, clipped


def test_agc_matches_formula():
    lin = nn.Linear(6, 5).to(F64)
    with torch.no_grad():
        lin.weight[0].zero_()                                   # a zero unit: eps applies
    gen = _gen(11)
    lin.weight.grad = torch.randn(5, 6, dtype=F64, generator=gen) * torch.tensor(
        [1.0, 1e-4, 0.1, 1e-3, 2.0], dtype=F64).view(5, 1)
    lin.bias.grad = torch.randn(5, dtype=F64, generator=gen)
    want_w, nw = _agc_reference(lin.weight.detach(), lin.weight.grad, 0.02, 1e-3)
    want_b, nb = _agc_reference(lin.bias.detach(), lin.bias.grad, 0.02, 1e-3)
    n = bt.adaptive_grad_clip_(lin.parameters(), clipping=0.02, eps=1e-3)
    torch.testing.assert_close(lin.weight.grad, want_w, rtol=1e-14, atol=0)
    torch.testing.assert_close(lin.bias.grad, want_b, rtol=1e-14, atol=0)
    assert n == nw + nb and 0 < nw < 5
    # every unit now satisfies the bound
    ratio = lin.weight.grad.norm(dim=1) / lin.weight.detach().norm(dim=1).clamp_min(1e-3)
    assert bool((ratio <= 0.02 * (1 + 1e-12)).all())


def test_agc_conv_units_and_errors():
    w = torch.randn(4, 3, 2, 2, dtype=F64, generator=_gen(12), requires_grad=True)
    w.grad = torch.randn(4, 3, 2, 2, dtype=F64, generator=_gen(13))
    want, n_want = _agc_reference(w.detach(), w.grad, 0.1, 1e-3)
    assert bt.adaptive_grad_clip_(w, clipping=0.1) == n_want == 4
    torch.testing.assert_close(w.grad, want, rtol=1e-14, atol=0)
    no_grad = torch.ones(3, requires_grad=True)
    assert bt.adaptive_grad_clip_([no_grad]) == 0
    with pytest.raises(ValueError, match="clipping > 0"):
        bt.adaptive_grad_clip_([w], clipping=0.0)
