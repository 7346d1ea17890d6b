"""A ``torch.distributed`` world of local processes: run a function on every rank and
collect the results — what the distributed tests and the distributed chapter of the book
use to run :class:`bncourse.torch.SyncBatchNorm` for real, on one machine.

:func:`run` starts ``world`` processes that form a gloo process group over the loopback
interface (a file store in a temporary folder rendezvous them: no port, no network), calls
``target(rank, world, *args)`` in each, and returns the ranks' results with tensors turned
into NumPy arrays.  It works from scripts, tests and notebooks (Colab's CPU runtime too):

* the processes come from a ``forkserver`` that has imported torch once, so each new rank
  costs a fork rather than a fresh interpreter importing torch (seconds each);
* ``target`` is sent to the children *by name*, so it must live in an importable module:
  a function defined in a notebook or in ``__main__`` cannot be found there (``ValueError``);
* ``args`` travel with plain :mod:`pickle` (tensors are copied, not shared);
* whatever happens — a rank raising, a rank hanging in a collective, the deadline passing —
  every process is reaped (terminate, then kill) and the store is removed.  A rank's
  exception comes back as ``RuntimeError`` carrying its traceback; a missing result as
  ``TimeoutError``.

:func:`sync_steps` is a ready-made ``target``: the steps of :func:`run_steps` on a model
whose batch norms are converted to :class:`~bncourse.torch.SyncBatchNorm`.
"""

import copy
import datetime
import os
import pickle
import queue as queue_module
import shutil
import sys
import tempfile
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .distributed import convert_sync_batchnorm


def to_numpy(obj):
    """``obj`` with every tensor (in dicts, lists, tuples) detached and copied to NumPy."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


def _loopback():
    return "lo0" if sys.platform == "darwin" else "lo"


def _child(target, rank, world, store, payload, timeout, results):
    """One rank: join the group, run ``target``, report (rank, "ok", result) or the traceback."""
    try:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback())   # loopback only
        torch.set_num_threads(1)                                   # ranks share the cores
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout))
        out = target(rank, world, *pickle.loads(payload))
        results.put((rank, "ok", to_numpy(out)))
    except BaseException:                                          # noqa: BLE001 - report, then exit
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _context():
    if "forkserver" not in mp.get_all_start_methods():            # pragma: no cover - Windows
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])     # the server imports torch (and us) once
    return ctx


def _reap(procs, grace):
    """Join the processes for up to ``grace`` seconds in all, then terminate, then kill."""
    end = time.monotonic() + grace
    for p in procs:
        p.join(timeout=max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(5)
        if p.is_alive():                                           # pragma: no cover
            p.kill()
            p.join()


def run(target, world, args=(), *, timeout=60.0):
    """``[target(0, world, *args), ..., target(world − 1, world, *args)]``, each called in its
    own process of a gloo process group of ``world`` ranks on loopback.

    ``target``: a module-level function of an importable module (not ``__main__``), run after
    ``torch.distributed.init_process_group``; what it returns must pickle (tensors are
    converted to NumPy).  ``args``: picklable, the same for every rank (each rank picks its
    part).  ``timeout`` (seconds) bounds the whole run and every collective.  Raises
    ``RuntimeError`` with the traceback of the first rank that failed, ``TimeoutError`` if
    results are missing at the deadline; the processes are reaped in every case.
    """
    if world < 1:
        raise ValueError(f"world must be at least 1, got {world}")
    module = getattr(target, "__module__", None)
    if module in (None, "__main__") or getattr(target, "__qualname__", "").count("<"):
        raise ValueError(f"target {target!r} must be a module-level function of an importable "
                         "module: the new processes find it by name, and cannot see functions "
                         "defined in __main__ (a notebook or a script) or nested in others")
    payload = pickle.dumps(tuple(args))
    ctx = _context()
    results = ctx.Queue()
    store_dir = tempfile.mkdtemp(prefix="bncourse-world-")
    store = os.path.join(store_dir, "store")
    procs = [ctx.Process(target=_child, args=(target, r, world, store, payload, timeout, results),
                         daemon=True) for r in range(world)]
    deadline = time.monotonic() + timeout
    grace = 0.0               # on failure the others may wait in a collective: no grace
    try:
        for p in procs:
            p.start()
        out = {}
        while len(out) < world:
            try:
                rank, status, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue_module.Empty:
                missing = sorted(set(range(world)) - set(out))
                raise TimeoutError(f"rank(s) {missing} of {world} sent no result within "
                                   f"{timeout} s") from None
            if status != "ok":
                raise RuntimeError(f"rank {rank} of {world} failed:\n{value}")
            out[rank] = value
        grace = max(1.0, deadline - time.monotonic())   # all reported: let them exit
        return [out[r] for r in range(world)]
    finally:
        _reap([p for p in procs if p.pid is not None], grace)
        results.close()
        shutil.rmtree(store_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- targets


def run_steps(module, xs, dys):
    """Forward and backward steps of ``module`` on the inputs ``xs`` with upstream gradients
    ``dys``: every step but the last in training mode, the last in eval mode.  Returns one
    dict per step: output ``y``, input gradient ``dx``, ``grad.<name>`` of every parameter
    and ``buffer.<name>`` of every buffer after the step (running statistics included)."""
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


def sync_steps(rank, world, module, xs, dys):
    """A :func:`run` target: :func:`run_steps` on this rank's part of each step's batch with
    a copy of ``module`` whose batch norms are :class:`~bncourse.torch.SyncBatchNorm`.

    ``xs``, ``dys``: one entry per step, each a list of ``world`` arrays (rank k takes entry
    k; batch sizes may differ, down to 0).  Parameter gradients come back as this rank's
    *local* sums — ``DistributedDataParallel`` would add them up across ranks."""
    model = convert_sync_batchnorm(copy.deepcopy(module))
    return run_steps(model, [torch.as_tensor(x[rank]) for x in xs],
                     [torch.as_tensor(d[rank]) for d in dys])
