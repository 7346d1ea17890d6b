"""Benchmark: ``python -m bncourse.bench`` times training-mode batch norm.

For each shape and dtype it interleaves, round-robin in one run, the same inputs through:

* ``copy``      — ``np.copyto`` of the input: the memory-bandwidth yardstick;
* ``ours``      — ``bncourse.numpy`` forward, and forward + backward (dx, dγ, dβ);
* ``torch1/2``  — ``torch.nn.functional.batch_norm`` forward, and forward + ``backward``
                  (grads of input, weight, bias), with 1 and with 2 intra-op threads;

and reports medians and the ratios that the targets are stated in:
forward / copy, forward / torch, forward+backward / torch.  Timings are wall-clock medians
of ``--repeat`` rounds after a warm-up; nothing here runs in the test suite.

``--backend cupy`` times the GPU instead (``bncourse.bench.gpu``): the fused kernels, the
generic path on CuPy and torch on CUDA against a device-to-device copy, with CUDA events;
``--json benchmarks/results/`` saves the results as ``<gpu-name>.json``.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from .. import numpy as bnp

DEFAULT_SHAPES = [(256, 1024), (4096, 1024), (32, 64, 56, 56), (8, 256, 28, 28)]


def _timer(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _candidates(x, dy, torch_threads):
    """name → zero-argument callable, all working on the same data."""
    C = x.shape[1]
    gamma = np.ones(C, x.dtype)
    beta = np.zeros(C, x.dtype)
    out = np.empty_like(x)

    def ours_fwd():
        bnp.batch_norm_forward(x, gamma, beta)

    def ours_fwd_bwd():
        _, cache = bnp.batch_norm_forward(x, gamma, beta)
        bnp.batch_norm_backward(dy, cache)

    cands = {"copy": lambda: np.copyto(out, x), "ours fwd": ours_fwd, "ours fwd+bwd": ours_fwd_bwd}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return cands
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(gamma.copy()).requires_grad_(True)
    tb = torch.from_numpy(beta.copy()).requires_grad_(True)
    tdy = torch.from_numpy(dy)

    def torch_fwd(n):
        def run():
            torch.set_num_threads(n)
            with torch.no_grad():
                F.batch_norm(tx, None, None, tw, tb, training=True)
        return run

    def torch_fwd_bwd(n):
        def run():
            torch.set_num_threads(n)
            tx.grad = tw.grad = tb.grad = None
            F.batch_norm(tx, None, None, tw, tb, training=True).backward(tdy)
        return run

    for n in torch_threads:
        cands[f"torch{n} fwd"] = torch_fwd(n)
        cands[f"torch{n} fwd+bwd"] = torch_fwd_bwd(n)
    return cands


def measure(shape, dtype, repeat=20, torch_threads=(1, 2), seed=0):
    """Median seconds per candidate, interleaved round-robin over ``repeat`` rounds."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    cands = _candidates(x, dy, torch_threads)
    for fn in cands.values():          # warm-up: allocations, thread pools, caches
        fn()
    times = {name: [] for name in cands}
    for _ in range(repeat):
        for name, fn in cands.items():
            times[name].append(_timer(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def ratios(t, torch_threads=2):
    """The target ratios from a :func:`measure` result (None where torch is absent)."""
    r = {"fwd / copy": t["ours fwd"] / t["copy"]}
    for n in (1, 2):
        if f"torch{n} fwd" in t:
            r[f"fwd / torch{n}"] = t["ours fwd"] / t[f"torch{n} fwd"]
            r[f"fwd+bwd / torch{n}"] = t["ours fwd+bwd"] / t[f"torch{n} fwd+bwd"]
    return r


def _cell(r, k):
    return f"{r[k]:7.2f}" if k in r else f"{'-':>7}"


def _fmt_shape(shape):
    return "(" + ", ".join(map(str, shape)) + ")"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bncourse.bench", description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"],
                   help="numpy: CPU; cupy: GPU, needs CuPy and a CUDA device "
                        "(default: %(default)s)")
    p.add_argument("--dtypes", nargs="+", default=None,
                   help="dtypes to time (default: float32 float64 (numpy), float16 float32 (cupy))")
    p.add_argument("--shapes", nargs="+", default=None,
                   help="shapes like 256x1024 32x64x56x56 (default: the standard ones of the backend)")
    p.add_argument("--repeat", type=int, default=20,
                   help="timed rounds after the warm-up; medians are reported "
                        "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of bncourse.numpy (default: its own choice)")
    p.add_argument("--json", default=None,
                   help="also write the raw results to this file (cupy: or folder, as "
                        "<gpu-name>.json; default: print only)")
    args = p.parse_args(argv)
    # PyTorch's OpenMP workers spin after each call by default; interleaved with our threads
    # they would steal a core from the next candidate.  Passive waiting keeps turns fair.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.shapes is not None:
        args.shapes = [tuple(map(int, s.split("x"))) for s in args.shapes]
    if args.backend == "cupy":
        from . import gpu
        return gpu.main(args)
    shapes = args.shapes or DEFAULT_SHAPES
    args.dtypes = args.dtypes or ["float32", "float64"]
    if args.threads:
        bnp.set_num_threads(args.threads)

    print(f"# bncourse.numpy ({bnp.get_num_threads()} threads) vs torch.nn.functional.batch_norm "
          f"and np.copyto; {platform.processor() or platform.machine()}, median of {args.repeat}")
    head = (f"{'shape':>18} {'dtype':>7} | {'copy ms':>8} {'fwd ms':>8} {'f+b ms':>8} | "
            f"{'fwd/copy':>8} {'fwd/t1':>7} {'fwd/t2':>7} {'f+b/t1':>7} {'f+b/t2':>7}")
    print(head)
    print("-" * len(head))
    results = []
    for shape in shapes:
        for dtype in args.dtypes:
            t = measure(shape, np.dtype(dtype), args.repeat)
            r = ratios(t)
            results.append({"shape": list(shape), "dtype": dtype, "seconds": t, "ratios": r})
            print(f"{_fmt_shape(shape):>18} {dtype:>7} | {t['copy']*1e3:8.3f} {t['ours fwd']*1e3:8.3f} "
                  f"{t['ours fwd+bwd']*1e3:8.3f} | {r['fwd / copy']:8.2f} {_cell(r, 'fwd / torch1')} "
                  f"{_cell(r, 'fwd / torch2')} {_cell(r, 'fwd+bwd / torch1')} {_cell(r, 'fwd+bwd / torch2')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": bnp.get_num_threads(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
