"""What each process of the distributed tests runs (a plain module, importable by spawned
children; not collected by pytest).  Results go back to the parent through a queue as
NumPy arrays; any exception goes back as its traceback."""

import datetime
import os
import traceback

import torch
import torch.distributed as dist
from torch import nn

import bncourse.torch as bt


def _tensors_to_numpy(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().numpy().copy()
    if isinstance(obj, dict):
        return {k: _tensors_to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_tensors_to_numpy(v) for v in obj]
    return obj


def module_steps(module, xs, dys):
    """Training steps then one eval step on this process's batches: outputs, input and
    parameter gradients, buffers after each step."""
    out = []
    for step, (x, dy) in enumerate(zip(xs, dys)):
        module.train(step < len(xs) - 1)
        x = x.clone().requires_grad_()
        y = module(x)
        y.backward(dy)
        out.append({"y": y, "dx": x.grad,
                    **{f"grad.{n}": p.grad.clone() for n, p in module.named_parameters()},
                    **{f"buffer.{n}": b.clone() for n, b in module.named_buffers()}})
        module.zero_grad()
    return out


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4, momentum=None)).double()


def worker(rank, world, store, scenarios, queue):
    """Run every scenario: {name: (kind, per-rank inputs, per-rank upstream gradients)}."""
    try:
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"              # loopback only
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=30))
        results = {}
        for name, (kind, xs, dys) in scenarios.items():
            xs = [torch.from_numpy(x[rank]) for x in xs]
            dys = [torch.from_numpy(d[rank]) for d in dys]
            if kind == "cnn":
                model = bt.convert_sync_batchnorm(small_cnn())
                results[name] = module_steps(model, xs, dys)
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
                results[name] = module_steps(m, xs, dys)
        queue.put((rank, "ok", _tensors_to_numpy(results)))
    except BaseException:                                      # noqa: BLE001 - report, then exit
        queue.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
