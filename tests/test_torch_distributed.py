"""Distributed batch norm on the real torch.distributed engine: 2 and 3 processes started
on loopback (gloo, a file store in a temporary directory), uneven batches (a process with
1 sample, one with none), compared with single-process batch norm on the concatenated
batch: outputs, input gradients, parameter gradients (summed over processes, as
DistributedDataParallel does) and running statistics on every process.

The processes are started, collected and reaped by :func:`bncourse.torch.local_world.run`
(a ``forkserver`` that imports torch once: a fresh interpreter per process would import it
every time, ~3 s each on 2 cores), which the book's distributed chapter uses too."""

import time

from conftest import assert_close, optional
import numpy as np
import pytest

torch = optional("torch")
import _torch_dist_worker as worker  # noqa: E402
from torch import nn  # noqa: E402

import bncourse.torch as bt  # noqa: E402
from bncourse.torch import local_world  # noqa: E402

if not torch.distributed.is_available():   # pragma: no cover - all CPU wheels have it
    pytest.skip("torch.distributed is not available", allow_module_level=True)

DEADLINE_S = 50          # for the whole spawn, run and join of one world
# per scenario: kind, per-step rank batch sizes (the last step runs in eval mode), sample shape
SIZES = {
    2: {"columns": ("ema", [[1, 7], [5, 2], [3, 3]], (3,)),
        "planes": ("cumulative", [[0, 5], [3, 1], [2, 2]], (4, 3, 2)),
        "cnn": ("cnn", [[3, 1], [2, 4], [1, 2]], (2, 5, 5)),
        "too_few": ("too_few", [[1, 0]], (3,))},
    3: {"columns": ("ema", [[4, 1, 6], [2, 2, 2], [1, 3, 2]], (3,)),
        "planes": ("cumulative", [[2, 0, 3], [1, 1, 1], [2, 0, 2]], (4, 3, 2)),
        "cnn": ("cnn", [[1, 2, 3], [2, 0, 2], [1, 1, 1]], (2, 5, 5)),
        "too_few": ("too_few", [[0, 1, 0]], (3,))},
}


def _scenarios(world, seed=0):
    """Global batches (float64) per scenario and step, split into the ranks' parts."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (kind, sizes, tail) in SIZES[world].items():
        xs, dys = [], []
        for step, per_rank in enumerate(sizes):
            n = sum(per_rank)
            x = rng.standard_normal((n,) + tail) * (1 + step) + 100.0 + step   # offset data
            dy = rng.standard_normal((n,) + ((4,) + tail[1:] if kind == "cnn" else tail))
            cuts = np.cumsum(per_rank)[:-1]
            xs.append(np.split(x, cuts))
            dys.append(np.split(dy, cuts))
        out[name] = (kind, xs, dys)
    return out


def _reference(kind, C):
    if kind == "cnn":
        return worker.small_cnn()
    cls = nn.BatchNorm1d if kind == "ema" else nn.BatchNorm2d
    m = cls(C, momentum=0.3 if kind == "ema" else None, dtype=torch.float64)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, C, dtype=torch.float64))
        m.bias.copy_(torch.linspace(-1.0, 1.0, C, dtype=torch.float64))
    return m


def _check(world, scenarios, per_rank):
    for name, (kind, xs, dys) in scenarios.items():
        got = [r[name] for r in per_rank]
        if kind == "too_few":
            for r in got:       # every process raised, and changed nothing
                assert "Expected more than 1 value per channel" in r["error"]
                assert "1 value(s) per channel in the whole process group" in r["error"]
                assert int(r["buffers"]["num_batches_tracked"]) == 0
                assert np.all(r["buffers"]["running_mean"] == 0) and np.all(r["buffers"]["running_var"] == 1)
            continue
        ref = _reference(kind, xs[0][0].shape[1])
        expected = local_world.run_steps(ref, [torch.from_numpy(np.concatenate(x)) for x in xs],
                                         [torch.from_numpy(np.concatenate(d)) for d in dys])
        for step, want in enumerate(expected):
            for key, value in want.items():
                value = value.detach().numpy()
                what = f"{world} processes, {name}, step {step}, {key}"
                if key in ("y", "dx"):                # each process holds its part
                    assert_close(np.concatenate([g[step][key] for g in got]), value, "float64", what=what)
                elif key.startswith("grad."):         # local sums; DDP would add them
                    assert_close(sum(g[step][key] for g in got), value, "float64", what=what)
                else:                                 # buffers: the same on every process
                    for rank, g in enumerate(got):
                        assert_close(g[step][key], value, "float64", what=f"{what} (rank {rank})")


@pytest.mark.parametrize("world", [2, 3])
def test_sync_batch_norm_equals_single_process_on_the_whole_batch(world):
    scenarios = _scenarios(world)
    start = time.perf_counter()
    per_rank = local_world.run(worker.run_scenarios, world, (scenarios,), timeout=DEADLINE_S)
    print(f"\n{world} processes: spawn + run + join {time.perf_counter() - start:.1f} s")
    _check(world, scenarios, per_rank)


def test_without_a_process_group_it_is_plain_batch_norm():
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    ours, ref = bt.SyncBatchNorm(3, dtype=torch.float64), nn.BatchNorm1d(3, dtype=torch.float64)
    assert_close(ours(x).detach().numpy(), ref(x).detach().numpy(), "float64")
    assert_close(ours.running_var.numpy(), ref.running_var.numpy(), "float64")
    with pytest.raises(ValueError, match="expected at least 2D input"):
        ours(torch.randn(3))


def test_convert_sync_batchnorm_keeps_state_and_sets_the_group():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Sequential(bt.BatchNorm1d(3)),
                          nn.SyncBatchNorm(3), nn.LayerNorm(3))
    tensors = dict(model.state_dict(keep_vars=True))
    group = object()                                  # any handle: stored, not used here
    assert bt.convert_sync_batchnorm(model, group) is model
    assert [type(m) for m in (model[1], model[2][0], model[3])] == [bt.SyncBatchNorm] * 3
    assert all(m.process_group is group for m in (model[1], model[2][0], model[3]))
    assert type(model[4]) is nn.LayerNorm
    assert all(v is tensors[k] for k, v in model.state_dict(keep_vars=True).items())
    assert repr(model[1]) == repr(nn.SyncBatchNorm(3))


def test_single_process_group_matches_batch_norm_and_refuses_double_backward(tmp_path):
    """A world of one process (in this test process, torn down after): the synchronized
    function equals batch_norm, and double backward raises instead of being wrong."""
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store1'}", rank=0, world_size=1)
    try:
        x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
        w = torch.rand(3, dtype=torch.float64, requires_grad=True)
        rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
        rm2, rv2 = rm.clone(), rv.clone()
        y = bt.sync_batch_norm(x, rm, rv, w, None, 0.2)
        assert_close(y.detach().numpy(), bt.batch_norm(x, rm2, rv2, w, None, True, 0.2).detach().numpy(), "float64")
        assert_close(rv.numpy(), rv2.numpy(), "float64")
        (gx,) = torch.autograd.grad(y.sum() + (y ** 2).sum(), x, create_graph=False)
        assert gx.shape == x.shape
        with pytest.raises(RuntimeError, match="double backward is not supported across processes"):
            torch.autograd.grad((bt.sync_batch_norm(x, None, None, w) ** 3).sum(), x, create_graph=True)
    finally:
        dist.destroy_process_group()
