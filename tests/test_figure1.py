"""bncourse.paper.mlp and bncourse.paper.figure1: the paper's network has exact gradients (central
differences, PyTorch autograd), batch norm makes it invariant to the weight scale, a short
run on real digits shows BN ahead of the baseline, runs are deterministic, and the command
line writes its JSON and figure."""

import dataclasses
import json

import numpy as np
import pytest

from bncourse.course import gradcheck
from bncourse.paper.datasets import load_mnist
from bncourse.paper.figure1 import (
    Config,
    History,
    batches,
    evaluate,
    initial_model,
    main,
    percentile_drift,
    sweep,
    train,
)
from bncourse.paper.mlp import MLP, Linear, Sigmoid, softmax_cross_entropy

SIZES = (7, 6, 6, 3)          # a small version of (784, 100, 100, 100, 10)
NORMS = [None, "batch", "group"]


def small_net(norm, seed=0):
    # groups=2: group norm over 3 units; init_std 0.5 so nothing is degenerate
    net = MLP(SIZES, norm=norm, init_std=0.5, rng=np.random.default_rng(seed), groups=2)
    for _, _, p in net.parameters():    # non-trivial gamma/beta too
        p += np.random.default_rng(seed + 1).uniform(-0.3, 0.3, p.shape)
    return net


@pytest.fixture(scope="module")
def data():
    return load_mnist()


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_gradients_match_central_differences(rng, norm):
    net = small_net(norm)
    x, y = rng.standard_normal((5, SIZES[0])), rng.integers(0, SIZES[-1], 5)
    net.loss_and_backward(x, y)
    for (i, name, p), (_, _, g) in zip(net.parameters(), net.gradients()):
        def loss(value, p=p):
            saved = p.copy()
            p[...] = value
            out, _ = softmax_cross_entropy(net.forward(x), y)
            p[...] = saved
            return out
        numeric = gradcheck.central_difference(loss, p)
        assert gradcheck.normwise_error(g, numeric) < 1e-8, (i, name)


def test_layer_pieces_match_central_differences(rng):
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    s = Sigmoid()
    s.forward(x)
    numeric = gradcheck.central_difference(lambda z: np.sum(w * Sigmoid().forward(z)), x)
    assert gradcheck.normwise_error(s.backward(w), numeric) < 1e-9
    lin = Linear(5, 3, rng, 1.0)
    dy = rng.standard_normal((4, 3))
    lin.forward(x)
    dx = lin.backward(dy)
    numeric = gradcheck.central_difference(lambda z: np.sum(dy * lin.forward(z)), x)
    assert gradcheck.normwise_error(dx, numeric) < 1e-9
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    _, dlogits = softmax_cross_entropy(logits, labels)
    numeric = gradcheck.central_difference(lambda z: softmax_cross_entropy(z, labels)[0], logits)
    assert gradcheck.normwise_error(dlogits, numeric) < 1e-9


def test_sigmoid_and_softmax_are_stable_for_huge_inputs():
    u = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    np.testing.assert_allclose(Sigmoid().forward(u), [[0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1]],
                               rtol=1e-15, atol=0)
    loss, d = softmax_cross_entropy(np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([0, 0]))
    assert loss == pytest.approx(1e4 / 2) and np.all(np.isfinite(d))


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_matches_torch_autograd(torch, rng, norm):
    F = torch.nn.functional
    net = small_net(norm)
    x, y = rng.standard_normal((6, SIZES[0])), rng.integers(0, SIZES[-1], 6)
    loss = net.loss_and_backward(x, y)
    params = {(i, n): torch.tensor(p, requires_grad=True) for i, n, p in net.parameters()}
    h = torch.tensor(x)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Linear):
            h = h @ params[i, "W"] + (params[i, "b"] if (i, "b") in params else 0)
        elif isinstance(layer, Sigmoid):
            h = torch.sigmoid(h)
        elif norm == "batch":
            h = F.batch_norm(h, None, None, params[i, "gamma"], params[i, "beta"], training=True)
        else:
            h = F.group_norm(h, 2, params[i, "weight"], params[i, "bias"])
    loss_t = F.cross_entropy(h, torch.tensor(y))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    for i, name, g in net.gradients():
        np.testing.assert_allclose(g, params[i, name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_batch_norm_net_is_invariant_to_the_scale_of_its_weights(rng):
    x, y = rng.random((60, SIZES[0])), rng.integers(0, SIZES[-1], 60)
    nets = [small_net("batch"), small_net("batch")]
    for layer in (layer for net in nets for layer in net.layers if hasattr(layer, "eps")):
        layer.eps = 1e-12                 # eps is the one thing that sees the scale
    for i, name, p in nets[1].parameters():
        if name == "W" and i < len(nets[1].layers) - 1:   # every hidden Linear, not the output
            p *= 10.0
    (l0, l1) = (n.loss_and_backward(x, y) for n in nets)
    assert l1 == pytest.approx(l0, rel=1e-9)
    g0, g1 = nets[0].layers[0].grads["W"], nets[1].layers[0].grads["W"]
    np.testing.assert_allclose(g1, g0 / 10.0, rtol=1e-8, atol=1e-14)   # dL/d(aW) = dL/dW / a
    plain = [small_net(None), small_net(None)]
    plain[1].layers[0].W *= 10.0
    assert abs(plain[1].loss_and_backward(x, y) - plain[0].loss_and_backward(x, y)) > 1e-3


def test_batches_cover_each_epoch_once():
    gen = batches(10, 3, np.random.default_rng(0))
    epoch = np.concatenate([next(gen) for _ in range(3)])
    assert len(set(epoch.tolist())) == 9 and len(next(gen)) == 3


def test_evaluate_leaves_running_statistics_alone(data, rng):
    net = MLP(norm="batch", rng=rng, dtype="float32")
    net.loss_and_backward(data.x_train[:60], data.y_train[:60])
    before = [layer.running_mean.copy() for layer in net.layers if hasattr(layer, "running_mean")]
    acc, pct = evaluate(net, data.x_test[:200], data.y_test[:200])
    after = [layer.running_mean for layer in net.layers if hasattr(layer, "running_mean")]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert 0 <= acc <= 1 and pct.shape == (3, 100) and np.all(pct[0] <= pct[1]) and np.all(pct[1] <= pct[2])
    assert all(layer.training for layer in net.layers if hasattr(layer, "running_mean"))


def test_batch_norm_learns_faster_on_real_digits(data):
    # the default (paper) setup after 300 steps: the baseline is still stuck near chance
    # (~0.1-0.3 for any seed), batch norm is near 0.9
    config = Config(steps=300, eval_every=150)
    for seed in (0, 1):
        base = train(data, dataclasses.replace(config, norm=None, seed=seed))
        with_bn = train(data, dataclasses.replace(config, norm="batch", seed=seed))
        assert with_bn.final_accuracy > 0.8
        assert with_bn.final_accuracy > base.final_accuracy + 0.3


def test_runs_are_deterministic_and_recorded(data):
    config = Config(steps=20, eval_every=10, norm="group")
    a, b = train(data, config), train(data, config)
    assert a.steps == [0, 10, 20] and a.test_accuracy == b.test_accuracy
    np.testing.assert_array_equal(a.percentiles, b.percentiles)
    assert a.percentiles.shape == (3, 3, 100) and np.isnan(a.train_loss[0])
    out = a.to_json(units=[0, 5])
    assert np.shape(out["percentiles"]) == (3, 3, 2) and out["train_loss"][0] is None
    json.dumps(out)


def test_a_diverging_run_stops(data):
    with np.errstate(invalid="ignore", over="ignore"):
        hist = train(data, Config(norm=None, steps=5, eval_every=1, lr=float("inf")))
    assert hist.diverged and len(hist.steps) < 6


def test_sweep_runs_every_value_for_every_norm(data):
    res = sweep(data, Config(steps=4, eval_every=2), "lr", [0.1, 1.0], norms=(None, "group"))
    assert set(res) == {None, "group"} and all(len(v) == 2 for v in res.values())
    assert [h.config.lr for h in res["group"]] == [0.1, 1.0]
    assert isinstance(res[None][0], History)


def test_command_line_writes_json_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    main(["--steps", "20", "--eval-every", "10", "--out", str(tmp_path), "--no-progress"])
    result = json.loads((tmp_path / "figure1.json").read_text())
    assert result["data"] == "subset" and result["n_train"] == 8000
    assert result["baseline"]["steps"] == [0, 10, 20] and result["batchnorm"]["config"]["norm"] == "batch"
    assert (tmp_path / "figure1.png").stat().st_size > 10_000
    assert "batchnorm: test accuracy" in capsys.readouterr().out


def test_initial_weights_are_the_same_numbers_at_every_scale():
    small, large = (initial_model(Config(norm="batch", init_std=s, output_std=0.05)) for s in (0.01, 1.0))
    np.testing.assert_allclose(large.layers[0].W, 100 * small.layers[0].W, rtol=1e-6)
    np.testing.assert_array_equal(large.layers[-1].W, small.layers[-1].W)   # output layer fixed
    plain = initial_model(Config(norm=None, init_std=0.01))
    np.testing.assert_array_equal(plain.layers[0].W, small.layers[0].W)     # same for every norm


def test_json_round_trip_and_drift(data):
    hist = train(data, Config(steps=20, eval_every=10, norm="batch"))
    back = History.from_json(json.loads(json.dumps(hist.to_json())))
    assert back.config == hist.config and back.steps == hist.steps
    np.testing.assert_allclose(back.test_accuracy, hist.test_accuracy, atol=1e-5)
    np.testing.assert_allclose(back.percentiles, hist.percentiles, atol=1e-4)
    # drift: a distribution that stops moving after the first third has drift 0; one that
    # shifts by its whole width in the last two thirds has drift 1
    still = History(Config(), steps=[0, 1, 2, 3], percentiles=np.array(
        [[[-9.0], [0.0], [9.0]]] + [[[-1.0], [0.0], [1.0]]] * 3))
    moving = History(Config(), steps=[0, 1, 2, 3], percentiles=np.array(
        [[[-1.0 + t], [t], [1.0 + t]] for t in (0.0, 0.0, 1.0, 2.0)]))
    np.testing.assert_allclose(percentile_drift(still), [0.0])
    np.testing.assert_allclose(percentile_drift(moving), [1.0])


def test_sweep_cache_trains_a_shared_configuration_once(data):
    cache = {}
    base = Config(steps=4, eval_every=2)
    first = sweep(data, base, "lr", [0.5, 1.0], norms=(None,), cache=cache)
    second = sweep(data, base, "init_std", [0.05, 0.1], norms=(None,), cache=cache)
    assert len(cache) == 3 and first[None][0] is second[None][0]   # lr 0.5 = init_std 0.05


def test_the_full_run_ships_as_package_data():
    from bncourse.figure1 import History, load_full_run

    full = load_full_run()  # chapter 9 reads it: no repository file at run time
    assert full["steps"] == 50_000 and full["data"] == "subset"
    for key in ("baseline", "batchnorm"):
        history = History.from_json(full[key])
        assert history.steps[-1] == full["steps"] and len(full[key]["drift"]) > 0
