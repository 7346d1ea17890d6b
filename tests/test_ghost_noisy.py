"""GhostBatchNorm1d/2d against torch.nn.BatchNorm (one ghost batch, and a sequence of calls
on the chunks) and DistributionShift (seeded, moving, identity in eval)."""

import pytest

torch = pytest.importorskip("torch")

from bncourse.torch import DistributionShift, GhostBatchNorm1d, GhostBatchNorm2d  # noqa: E402


def _pair(cls, ref_cls, c, ghost, **kw):
    g, r = cls(c, ghost, **kw).double(), ref_cls(c, **kw).double()
    if g.weight is not None:
        with torch.no_grad():
            g.weight.uniform_(0.5, 2.0)
            g.bias.normal_()
            r.weight.copy_(g.weight)
            r.bias.copy_(g.bias)
    return g, r


@pytest.mark.parametrize("cls, ref_cls, shape", [
    (GhostBatchNorm1d, torch.nn.BatchNorm1d, (16, 3)),
    (GhostBatchNorm1d, torch.nn.BatchNorm1d, (16, 3, 5)),
    (GhostBatchNorm2d, torch.nn.BatchNorm2d, (16, 3, 4, 5)),
])
@pytest.mark.parametrize("affine", [True, False])
def test_ghost_equals_torch_when_ghost_is_the_batch(cls, ref_cls, shape, affine):
    torch.manual_seed(0)
    g, r = _pair(cls, ref_cls, 3, 16, affine=affine)
    for _ in range(3):
        x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
        xg, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yg, yr = g(xg), r(xr)
        torch.testing.assert_close(yg, yr, rtol=1e-12, atol=1e-12)
        dy = torch.randn_like(yg)
        yg.backward(dy)
        yr.backward(dy)
        torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.running_mean, r.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.running_var, r.running_var, rtol=1e-12, atol=1e-12)
    g.eval()
    r.eval()
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(g(x), r(x), rtol=1e-12, atol=1e-12)


def test_ghost_chunks_are_torch_calls_in_order():
    torch.manual_seed(1)
    g, r = _pair(GhostBatchNorm2d, torch.nn.BatchNorm2d, 4, 3, momentum=0.3)
    x = torch.randn(10, 4, 2, 3, dtype=torch.float64)  # ghosts of 3, 3, 3, 1 samples
    y = g(x)
    expected = torch.cat([r(c) for c in x.split(3)])
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.running_var, r.running_var, rtol=1e-12, atol=1e-12)
    # each ghost batch has mean 0 per channel; the whole batch of the first 9 need not differ
    for c in y[:9].split(3):
        assert torch.allclose(((c - g.bias.view(1, 4, 1, 1)) / g.weight.view(1, 4, 1, 1))
                              .mean(dim=(0, 2, 3)), torch.zeros(4, dtype=torch.float64),
                              atol=1e-12)


def test_ghost_without_running_stats_uses_ghost_stats_in_eval():
    g = GhostBatchNorm1d(2, 4, track_running_stats=False, affine=False).eval()
    x = torch.randn(8, 2, dtype=torch.float64)
    y = g(x)
    torch.testing.assert_close(y[:4].mean(0), torch.zeros(2, dtype=torch.float64),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("kw, msg", [({"ghost_batch_size": 0}, "ghost_batch_size"),
                                     ({"momentum": 1.5}, "momentum"), ({"eps": 0.0}, "eps")])
def test_ghost_rejects_bad_arguments(kw, msg):
    args = {"num_features": 3, "ghost_batch_size": 4} | kw
    with pytest.raises(ValueError, match=msg):
        GhostBatchNorm1d(**args)


def test_ghost_rejects_bad_input():
    with pytest.raises(ValueError, match="expected 4D input, got 2D"):
        GhostBatchNorm2d(3, 2)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="3 channels"):
        GhostBatchNorm1d(3, 2)(torch.randn(4, 5))


def test_distribution_shift_is_seeded_moving_and_identity_in_eval():
    x = torch.randn(6, 5, 2, 2)
    a, b = DistributionShift(5, 1.0, 3.0, seed=7), DistributionShift(5, 1.0, 3.0, seed=7)
    ya1, ya2 = a(x), a(x)
    torch.testing.assert_close(ya1, b(x))        # same seed, same draws
    assert not torch.allclose(ya1, ya2)          # a new draw at every call
    s, t = a.last_scale, a.last_shift
    assert torch.all((s >= 1) & (s <= 3)) and torch.all(t.abs() <= 1)
    torch.testing.assert_close(ya2, x * s.view(1, 5, 1, 1) + t.view(1, 5, 1, 1))
    a.eval()
    assert a(x) is x
    with pytest.raises(ValueError, match="max_scale"):
        DistributionShift(5, max_scale=0.5)
    with pytest.raises(ValueError, match=r"\(N, 5, \.\.\.\)"):
        a(torch.randn(3, 4))
