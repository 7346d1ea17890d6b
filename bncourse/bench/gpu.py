"""The GPU half of ``python -m bncourse.bench``: ``--backend cupy``.

For each shape and dtype, on the same device arrays, in one stream, round-robin:

* ``copy``     — a device-to-device ``cudaMemcpyAsync`` of x: the bandwidth yardstick;
* ``generic``  — ``bncourse.core.closed_form`` on CuPy arrays (the float64 array-API path);
* ``fused``    — ``bncourse.cupy`` (validation + the fused kernels of ``bncourse.kernels.cuda``);
* ``torch``    — ``torch.nn.functional.batch_norm`` on CUDA tensors sharing the memory (its
                 cuDNN or native kernels), if torch with CUDA is importable;

each as forward (``fwd``), backward alone (``bwd``, on a cache / graph made beforehand) and
both (``fwd+bwd``).  float16 runs with float32 γ, β (as under autocast).

Timing: CUDA events around each call, ``--repeat`` rounds after one warm-up round, medians.
Before each call a memset of max(2·L2, 256 MiB) flushes the L2 cache, so no input is timed
from cache, and keeps the GPU busy while the host enqueues the call, so the times are GPU
times rather than Python's launch latency (inputs here are tens of MB and more).  Bytes that must be moved:
forward reads x and writes y (2·|x|), backward reads x and dy and writes dx (3·|x|),
forward+backward 5·|x|; effective bandwidth = those bytes / time, and ``of_copy`` is that
bandwidth over the copy's (2·|x| / its time).

A two-pass batch norm cannot reach the copy's bandwidth on inputs larger than the L2 cache:
the statistics must be known before the first output is written, so the fused forward
reads x twice (3·|x| of traffic for 2·|x| that "must" move: ``of_copy`` ≤ 2/3) and the
backward reads x and dy twice (5·|x| for 3·|x|: ≤ 3/5).  ``traffic_of_copy`` reports the
bandwidth of the traffic the fused kernels really cause, which can approach 1.
"""

import json
import math
import os
import platform
import re
import statistics

import numpy as np

DEFAULT_SHAPES = [(32, 64, 112, 112), (256, 256, 14, 14), (65536, 1024)]
DEFAULT_DTYPES = ["float16", "float32"]
MUST_MOVE = {"fwd": 2, "bwd": 3, "fwd+bwd": 5}     # in units of |x| bytes
FUSED_TRAFFIC = {"fwd": 3, "bwd": 5, "fwd+bwd": 8}
PASSES = tuple(MUST_MOVE)


def gpu_name(cp):
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def results_path(path, name):
    """``path`` itself, or ``path/<gpu-name>.json`` when ``path`` is a folder."""
    if os.path.isdir(path) or path.endswith(os.sep):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        return os.path.join(path, f"{slug}.json")
    return path


def save_results(path, meta, results):
    """Write one benchmark run (``meta``: device and versions; ``results``: a list of
    :func:`summarize` entries) as JSON to ``path``; returns ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({**meta, "results": results}, f, indent=1)
    return path


def load_results(folder):
    """Every results file in ``folder`` as [(file name, document)], sorted by name; [] if
    the folder is missing or holds none. Each document has at least ``device`` and
    ``results`` (entries with ``shape``, ``dtype``, ``of_copy``, ``traffic_of_copy``)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                found.append((name, json.load(f)))
    return found


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _shared_stream(cp, torch):
    """The stream everything runs and is timed on: torch's current stream, seen by CuPy."""
    if torch is None:
        return cp.cuda.get_current_stream()
    ts = torch.cuda.current_stream()
    if hasattr(cp.cuda.Stream, "from_external"):           # CuPy >= 14
        return cp.cuda.Stream.from_external(ts)
    return cp.cuda.ExternalStream(ts.cuda_stream)


class Timer:
    """Times callables with CUDA events on one stream, the L2 cache flushed before each."""

    def __init__(self, cp, stream):
        self.cp, self.stream = cp, stream
        l2 = cp.cuda.Device().attributes["L2CacheSize"]
        self.scratch = cp.empty(max(2 * l2, 256 << 20), dtype=np.uint8)
        self.pending = []            # (name, start, end) recorded but not read

    def record(self, name, fn):
        cp = self.cp
        cp.cuda.runtime.memsetAsync(self.scratch.data.ptr, 0, self.scratch.nbytes, self.stream.ptr)
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(self.stream)
        fn()
        end.record(self.stream)
        self.pending.append((name, start, end))

    def collect(self):
        """{name: [seconds, ...]} of everything recorded since the last call."""
        self.stream.synchronize()
        out = {}
        for name, start, end in self.pending:
            out.setdefault(name, []).append(self.cp.cuda.get_elapsed_time(start, end) / 1e3)
        self.pending = []
        return out


def _candidates(cp, torch, shape, dtype, seed=0):
    """name → zero-argument callable; all on the same device data."""
    from .. import cupy as bcp
    from ..core import closed_form as generic

    rng = np.random.default_rng(seed)
    C = shape[1]
    pdt = np.float32 if dtype == "float16" else dtype      # parameters: float32 for float16
    x = cp.asarray(rng.standard_normal(shape, dtype=np.float32) * 2 + 3).astype(dtype)
    dy = cp.asarray(rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
    gamma, beta = cp.ones(C, dtype=pdt), cp.zeros(C, dtype=pdt)
    out = cp.empty_like(x)

    fused_cache = bcp.batch_norm_forward(x, gamma, beta)[1]
    generic_cache = generic.batch_norm_forward(x, gamma, beta, 1e-5)[1]
    cands = {
        "copy": lambda: out.data.copy_from_device_async(x.data, x.nbytes),
        "fused fwd": lambda: bcp.batch_norm_forward(x, gamma, beta),
        "fused bwd": lambda: bcp.batch_norm_backward(dy, fused_cache),
        "fused fwd+bwd": lambda: bcp.batch_norm_backward(dy, bcp.batch_norm_forward(x, gamma, beta)[1]),
        "generic fwd": lambda: generic.batch_norm_forward(x, gamma, beta, 1e-5),
        "generic bwd": lambda: generic.norm_backward(dy, generic_cache),
        "generic fwd+bwd": lambda: generic.norm_backward(
            dy, generic.batch_norm_forward(x, gamma, beta, 1e-5)[1]),
    }
    if torch is None:
        return cands
    import torch.nn.functional as F
    tx = torch.from_dlpack(x).requires_grad_(True)
    tw = torch.from_dlpack(gamma).requires_grad_(True)
    tb = torch.from_dlpack(beta).requires_grad_(True)
    tdy = torch.from_dlpack(dy)
    bn = lambda: F.batch_norm(tx, None, None, tw, tb, training=True, eps=1e-5)
    graph = bn()

    def torch_fwd():
        with torch.no_grad():
            bn()

    cands.update({
        "torch fwd": torch_fwd,
        "torch bwd": lambda: torch.autograd.grad(graph, (tx, tw, tb), tdy, retain_graph=True),
        "torch fwd+bwd": lambda: torch.autograd.grad(bn(), (tx, tw, tb), tdy),
    })
    return cands


def measure(cp, torch, stream, shape, dtype, repeat):
    """Median seconds per candidate, interleaved round-robin, after one warm-up round."""
    timer = Timer(cp, stream)
    with stream:
        cands = _candidates(cp, torch, shape, dtype)
        for rounds in (1, repeat):
            for _ in range(rounds):
                for name, fn in cands.items():
                    timer.record(name, fn)
            times = timer.collect()        # the first collection is the warm-up's
    del cands
    cp.get_default_memory_pool().free_all_blocks()
    if torch is not None:
        torch.cuda.empty_cache()
    return {name: statistics.median(ts) for name, ts in times.items()}


def summarize(shape, dtype, t):
    """Bandwidths and ratios of one :func:`measure` result."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    copy_bw = 2 * nbytes / t["copy"]
    bw, of_copy, traffic, vs_torch = {}, {}, {}, {}
    for impl in ("fused", "generic", "torch"):
        for p in PASSES:
            key = f"{impl} {p}"
            if key not in t:
                continue
            bw[key] = MUST_MOVE[p] * nbytes / t[key]
            of_copy[key] = bw[key] / copy_bw
            if impl == "fused":
                traffic[key] = FUSED_TRAFFIC[p] * nbytes / t[key] / copy_bw
            if impl != "torch" and f"torch {p}" in t:
                vs_torch[key] = t[key] / t[f"torch {p}"]
    return {"shape": list(shape), "dtype": dtype, "bytes": nbytes, "seconds": t,
            "bandwidth_GBps": {"copy": copy_bw / 1e9, **{k: v / 1e9 for k, v in bw.items()}},
            "of_copy": of_copy, "traffic_of_copy": traffic, "time_vs_torch": vs_torch}


def _fmt(v, width, spec):
    return f"{'-':>{width}}" if v is None else f"{v:{width}{spec}}"


def _us(t, k):
    return t[k] * 1e6


def main(args):
    """Run the GPU benchmark for parsed ``args`` (shapes, dtypes, repeat, json)."""
    from .. import cupy as bcp
    problem = bcp.unavailable_error()
    if problem is not None:
        raise SystemExit(f"python -m bncourse.bench --backend cupy: {problem}")
    import cupy as cp

    torch = _torch_cuda()
    stream = _shared_stream(cp, torch)
    shapes = args.shapes or DEFAULT_SHAPES
    dtypes = args.dtypes or DEFAULT_DTYPES
    name = gpu_name(cp)
    print(f"# bncourse.cupy on {name}: fused kernels, generic path"
          f"{', torch ' + torch.__version__ if torch is not None else ' (torch with CUDA not found)'}; "
          f"CUDA events, L2 flushed, median of {args.repeat}")
    head = (f"{'shape':>20} {'dtype':>7} | {'copy us':>8} {'fwd us':>8} {'bwd us':>8} "
            f"{'f+b us':>8} | {'fwd/copy':>8} {'bwd/copy':>8} | {'fwd/t':>6} {'bwd/t':>6} "
            f"{'f+b/t':>6} | {'generic f+b/t':>13}")
    print(head)
    print("-" * len(head))
    results = []
    for shape in shapes:
        for dtype in dtypes:
            t = measure(cp, torch, stream, shape, dtype, args.repeat)
            r = summarize(shape, dtype, t)
            results.append(r)
            oc, vt = r["of_copy"], r["time_vs_torch"]
            print(f"{'(' + ', '.join(map(str, shape)) + ')':>20} {dtype:>7} | {_us(t, 'copy'):8.1f} "
                  f"{_us(t, 'fused fwd'):8.1f} {_us(t, 'fused bwd'):8.1f} {_us(t, 'fused fwd+bwd'):8.1f} | "
                  f"{oc['fused fwd']:8.2f} {oc['fused bwd']:8.2f} | "
                  f"{_fmt(vt.get('fused fwd'), 6, '.2f')} {_fmt(vt.get('fused bwd'), 6, '.2f')} "
                  f"{_fmt(vt.get('fused fwd+bwd'), 6, '.2f')} | "
                  f"{_fmt(vt.get('generic fwd+bwd'), 13, '.2f')}")
    print("fwd/copy, bwd/copy: effective bandwidth (bytes that must move / time) over the copy's; "
          "/t: time over torch's")
    if args.json:
        meta = {"device": name,
                "multiprocessors": cp.cuda.Device().attributes["MultiProcessorCount"],
                "l2_bytes": cp.cuda.Device().attributes["L2CacheSize"],
                "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
                "cuda_driver": cp.cuda.runtime.driverGetVersion(),
                "cupy": cp.__version__, "torch": None if torch is None else torch.__version__,
                "python": platform.python_version(), "repeat": args.repeat,
                "bytes_that_must_move": {p: f"{k} x |x|" for p, k in MUST_MOVE.items()},
                "fused_traffic": {p: f"{k} x |x|" for p, k in FUSED_TRAFFIC.items()}}
        print(f"wrote {save_results(results_path(args.json, name), meta, results)}")
