"""bncourse.course.landscape: the smoothness quantities on a quadratic (closed form and
finite differences), scale-invariance identities, layer statistics."""

import math

import pytest

torch = pytest.importorskip("torch")

from bncourse.course.landscape import effective_learning_rate, layer_statistics, probe_along_gradient  # noqa: E402


def _quadratic(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.linspace(0.5, 4.0, n, dtype=torch.float64)
    a = q @ torch.diag(eig) @ q.T
    w = torch.randn(n, generator=gen, dtype=torch.float64).requires_grad_()
    return a, eig, w, (lambda: 0.5 * w @ a @ w)


def test_probe_on_a_quadratic_matches_the_closed_form():
    a, eig, w, loss_fn = _quadratic()
    w0 = w.detach().clone()
    etas = (0.01, 0.1, 0.3)
    probe = probe_along_gradient(loss_fn, [w], etas)
    torch.testing.assert_close(w.detach(), w0, rtol=0, atol=0)  # restored
    g = a @ w0
    for eta, loss, change in zip(etas, probe.losses, probe.grad_changes):
        w1 = w0 - eta * g
        assert math.isclose(loss, float(0.5 * w1 @ a @ w1), rel_tol=1e-12)
        assert math.isclose(change, float(torch.linalg.vector_norm(eta * a @ g)), rel_tol=1e-12)
    beta = float(torch.linalg.vector_norm(a @ g) / torch.linalg.vector_norm(g))
    assert math.isclose(probe.beta_smoothness, beta, rel_tol=1e-12)
    assert probe.beta_smoothness <= float(eig.max()) * (1 + 1e-12)
    losses = (float(0.5 * w0 @ a @ w0),) + probe.losses
    assert math.isclose(probe.loss_range, max(losses) - min(losses), rel_tol=1e-12)
    assert math.isclose(probe.gradient_predictiveness, max(probe.grad_changes), rel_tol=1e-12)


def test_probe_agrees_with_finite_differences():
    # the gradient change for a small eta is eta * H g; H g by central differences of L
    a, _, w, loss_fn = _quadratic(seed=3)
    eta, h = 1e-3, 1e-4
    probe = probe_along_gradient(loss_fn, [w], (eta,))
    w0 = w.detach().clone()
    g = a @ w0
    def grad_fd(v):
        e = torch.eye(len(v), dtype=torch.float64)
        return torch.stack([(0.5 * (v + h * e[i]) @ a @ (v + h * e[i])
                             - 0.5 * (v - h * e[i]) @ a @ (v - h * e[i])) / (2 * h)
                            for i in range(len(v))])
    change_fd = float(torch.linalg.vector_norm(grad_fd(w0 - eta * g) - grad_fd(w0)))
    assert math.isclose(probe.grad_changes[0], change_fd, rel_tol=1e-6)
    assert math.isclose(probe.grad_norm, float(torch.linalg.vector_norm(grad_fd(w0))),
                        rel_tol=1e-8)


def test_probe_rejects_bad_steps():
    _, _, w, loss_fn = _quadratic()
    with pytest.raises(ValueError, match="positive"):
        probe_along_gradient(loss_fn, [w], (0.1, 0.0))


def _bn_net(seed=0, eps=1e-5):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(5, 4, bias=False).double()
    net = torch.nn.Sequential(lin, torch.nn.BatchNorm1d(4, eps=eps).double(), torch.nn.Tanh(),
                              torch.nn.Linear(4, 1).double())
    x = torch.randn(32, 5, dtype=torch.float64)
    return net, lin, x


def test_scale_invariance_identities():
    # exact only when eps is negligible: eps breaks L(αw) = L(w) by about eps / σ_B²
    net, lin, x = _bn_net(eps=1e-30)  # torch needs eps > 0; σ_B² + 1e-30 == σ_B²
    def loss(m):
        return (m(x) ** 2).mean()
    loss(net).backward()
    g = lin.weight.grad.clone()
    # per unit (row), ⟨∇w, w⟩ = 0 to float64 rounding
    dots = (g * lin.weight.detach()).sum(dim=1)
    assert torch.all(dots.abs() < 1e-13 * g.norm() * lin.weight.norm())
    with torch.no_grad():
        lin.weight.mul_(3.0)
    net.zero_grad()
    loss(net).backward()
    torch.testing.assert_close(lin.weight.grad, g / 3.0, rtol=1e-10, atol=1e-14)
    assert math.isclose(effective_learning_rate(0.1, lin.weight),
                        0.1 / float(lin.weight.detach().norm() ** 2), rel_tol=1e-12)
    with pytest.raises(ValueError, match="zero"):
        effective_learning_rate(0.1, torch.zeros(3))


def test_layer_statistics_records_outputs_and_grads():
    net, lin, x = _bn_net(1)
    mods = [("lin", lin), ("tanh", net[2]), ("out", net[3])]
    stats = layer_statistics(net, mods, lambda m: (m(x) ** 2).mean(), threshold=0.5)
    h = net[2](net[1](lin(x))).detach()
    assert [s.name for s in stats] == ["lin", "tanh", "out"]
    assert math.isclose(stats[1].std, float(h.std()), rel_tol=1e-12)
    assert math.isclose(stats[1].saturation, float((h.abs() >= 0.5).double().mean()))
    assert math.isnan(stats[1].grad_norm)
    assert math.isclose(stats[0].grad_norm, float(lin.weight.grad.norm()), rel_tol=1e-12)
    assert not net[0]._forward_hooks  # hooks removed
