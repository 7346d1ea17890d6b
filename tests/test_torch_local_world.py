"""bncourse.torch.local_world: a local gloo world runs a target on every rank, returns the
results as NumPy, and always reaps its processes — when a rank raises, when one hangs,
when the target cannot be found by the children."""

import time

from conftest import assert_close, optional
import numpy as np
import pytest

torch = optional("torch")
import _torch_dist_worker as worker  # noqa: E402
from torch import nn  # noqa: E402

from bncourse.torch import local_world  # noqa: E402

if not torch.distributed.is_available():   # pragma: no cover - all CPU wheels have it
    pytest.skip("torch.distributed is not available", allow_module_level=True)


def test_sync_steps_on_uneven_ranks_equals_the_whole_batch():
    """The notebook's target: a module passed as an argument, ranks with 3, 0 and 2 rows."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=0.5)).double()
    rng = np.random.default_rng(0)
    sizes = [[3, 0, 2], [1, 2, 2]]                       # training step, then an eval step
    xs = [np.split(rng.standard_normal((sum(s), 4)) + 50.0, np.cumsum(s)[:-1]) for s in sizes]
    dys = [np.split(rng.standard_normal((sum(s), 3)), np.cumsum(s)[:-1]) for s in sizes]
    got = local_world.run(local_world.sync_steps, 3, (model, xs, dys), timeout=50)
    want = local_world.run_steps(model, [torch.from_numpy(np.concatenate(x)) for x in xs],
                                 [torch.from_numpy(np.concatenate(d)) for d in dys])
    for step, expected in enumerate(want):
        for key, value in local_world.to_numpy(expected).items():
            if key in ("y", "dx"):
                assert_close(np.concatenate([g[step][key] for g in got]), value, "float64", what=key)
            elif key.startswith("grad."):
                assert_close(sum(g[step][key] for g in got), value, "float64", what=key)
            else:
                for g in got:
                    assert_close(g[step][key], value, "float64", what=key)
    assert model[1].num_batches_tracked == 1 and isinstance(model[1], nn.BatchNorm1d)


def test_a_failing_rank_raises_with_its_traceback_and_frees_the_others():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)rank 1 of 2 failed.*ArithmeticError: rank 1 gives up"):
        local_world.run(worker.fail_on, 2, (1,), timeout=40)
    assert time.monotonic() - start < 30                # rank 0's barrier was not waited out


def test_a_hanging_rank_times_out():
    with pytest.raises(TimeoutError, match=r"rank\(s\) \[0, 1\] of 2 sent no result within 3 s"):
        local_world.run(worker.hang, 2, (60,), timeout=3)


def test_targets_the_children_cannot_import_are_refused():
    def nested(rank, world):
        return rank

    for target in (nested, lambda rank, world: rank):
        with pytest.raises(ValueError, match="module-level function of an importable module"):
            local_world.run(target, 2)
    def main_level(rank, world):
        return rank

    main_level.__module__, main_level.__qualname__ = "__main__", "main_level"   # as in a notebook
    with pytest.raises(ValueError, match="cannot see functions defined in __main__"):
        local_world.run(main_level, 2)
    with pytest.raises(ValueError, match="world must be at least 1"):
        local_world.run(worker.hang, 0)


def test_to_numpy_converts_nested_tensors():
    out = local_world.to_numpy({"a": [torch.ones(2)], "b": (torch.zeros(1, requires_grad=True), 3)})
    assert isinstance(out["a"][0], np.ndarray) and isinstance(out["b"], tuple) and out["b"][1] == 3
