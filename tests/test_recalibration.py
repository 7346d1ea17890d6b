"""bncourse.course.recalibration.recalibrate: the average of per-batch statistics, and
torch.optim.swa_utils.update_bn's result on the same model."""

from conftest import assert_close
import numpy as np
import pytest

from bncourse.course.recalibration import recalibrate
import bncourse.numpy as bnp


def _batches(rng, shape, k):
    C = shape[1]
    return [rng.standard_normal(shape) * (1 + j) + rng.uniform(-3, 3, C).reshape((1, C) + (1,) * (len(shape) - 2))
            for j in range(k)]


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (2, 3, 4, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_one_layer_gets_the_average_of_batch_statistics(rng, shape, training):
    layer = bnp.BatchNorm(3, momentum=0.3, dtype="float64").train(training)
    layer.gamma[...] = [1.5, 0.5, 2.0]
    for xb in _batches(rng, shape, 3):                    # stale statistics to overwrite
        layer.train()(xb)
    layer.train(training)
    batches = _batches(rng, shape, 5)
    recalibrate(layer, batches)
    axes = (0,) + tuple(range(2, len(shape)))
    assert_close(layer.running_mean, np.mean([b.mean(axis=axes) for b in batches], 0), "float64")
    assert_close(layer.running_var, np.mean([b.var(axis=axes, ddof=1) for b in batches], 0), "float64")
    assert layer.num_batches_tracked == 5
    assert layer.momentum == 0.3 and layer.training == training
    np.testing.assert_array_equal(layer.gamma, [1.5, 0.5, 2.0])


def test_pairs_are_accepted_and_empty_input_changes_nothing(rng):
    layer = bnp.BatchNorm(2, dtype="float64")
    x = rng.standard_normal((6, 2)) + 4
    recalibrate(layer, [(x, "target")])
    assert_close(layer.running_mean, x.mean(0), "float64")
    before = layer.running_mean.copy()
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate(layer, iter([]))
    np.testing.assert_array_equal(layer.running_mean, before)
    assert layer.num_batches_tracked == 1


def test_modes_and_momenta_are_restored_when_a_batch_fails(rng):
    layer = bnp.BatchNorm(2, momentum=0.2).eval()
    with pytest.raises(ValueError, match="channels"):
        recalibrate(layer, [rng.standard_normal((4, 3)).astype(np.float32)])
    assert layer.momentum == 0.2 and not layer.training


def test_matches_torch_update_bn_on_a_small_model(torch, rng):
    from torch.optim.swa_utils import update_bn
    nn = torch.nn
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3),
                        nn.BatchNorm1d(3, momentum=0.5)).double()
    for _ in range(3):                                     # move the statistics first
        net(torch.tensor(rng.standard_normal((8, 4))))
    net.eval()
    W1, b1, W2, b2 = (p.detach().numpy() for p in (net[0].weight, net[0].bias, net[3].weight, net[3].bias))
    bn1, bn2 = bnp.BatchNorm(6, dtype="float64"), bnp.BatchNorm(3, momentum=0.5, dtype="float64")
    for ours, theirs in [(bn1, net[1]), (bn2, net[4])]:
        ours.gamma[...] = theirs.weight.detach().numpy()
        ours.beta[...] = theirs.bias.detach().numpy()
        ours.eval()
    model = [lambda x: x @ W1.T + b1, bn1, lambda x: np.maximum(x, 0), lambda x: x @ W2.T + b2, bn2]

    data = [rng.standard_normal((m, 4)) * 2 + 1 for m in (16, 16, 7)]   # a short last batch
    update_bn([torch.tensor(x) for x in data], net)
    recalibrate(model, data)
    for ours, theirs in [(bn1, net[1]), (bn2, net[4])]:
        assert_close(ours.running_mean, theirs.running_mean.numpy(), "float64")
        assert_close(ours.running_var, theirs.running_var.numpy(), "float64")
        assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 3
        assert ours.momentum == theirs.momentum and ours.training == theirs.training is False
    x = rng.standard_normal((5, 4))
    y = x
    for layer in model:
        y = layer(y)
    assert_close(y, net(torch.tensor(x)).detach().numpy(), "float64", what="eval output")
