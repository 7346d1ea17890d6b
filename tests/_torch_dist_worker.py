"""What each process of the distributed tests runs: a :func:`bncourse.torch.local_world.run`
target (a plain module, importable by the spawned processes; not collected by pytest)."""

import torch
from torch import nn

import bncourse.torch as bt
from bncourse.torch.local_world import run_steps


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4, momentum=None)).double()


def run_scenarios(rank, world, scenarios):
    """Run every scenario: {name: (kind, per-rank inputs, per-rank upstream gradients)}."""
    results = {}
    for name, (kind, xs, dys) in scenarios.items():
        xs = [torch.from_numpy(x[rank]) for x in xs]
        dys = [torch.from_numpy(d[rank]) for d in dys]
        if kind == "cnn":
            model = bt.convert_sync_batchnorm(small_cnn())
            results[name] = run_steps(model, xs, dys)
        elif kind == "too_few":
            m = bt.SyncBatchNorm(xs[0].shape[1], dtype=torch.float64)
            try:
                m(xs[0])
                results[name] = "no error"
            except ValueError as exc:
                results[name] = {"error": str(exc), "buffers": dict(m.named_buffers())}
        else:
            momentum = None if kind == "cumulative" else 0.3
            m = bt.SyncBatchNorm(xs[0].shape[1], momentum=momentum, dtype=torch.float64)
            with torch.no_grad():
                m.weight.copy_(torch.linspace(0.5, 2.0, m.num_features, dtype=torch.float64))
                m.bias.copy_(torch.linspace(-1.0, 1.0, m.num_features, dtype=torch.float64))
            results[name] = run_steps(m, xs, dys)
    return results


def fail_on(rank, world, bad_rank):
    """Raises on ``bad_rank``; the others wait in a collective that never completes."""
    if rank == bad_rank:
        raise ArithmeticError(f"rank {rank} gives up")
    torch.distributed.barrier()
    return rank


def hang(rank, world, seconds):
    """Sleeps past the deadline without raising."""
    import time
    time.sleep(seconds)
    return rank
