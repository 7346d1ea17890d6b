"""Adversarial inputs for batch-norm statistics, and how far an implementation lands from the
exact answer: ``python -m bncourse.accuracy`` prints bncourse next to PyTorch's CPU kernel.

The exact answer for an input is computed in float64 by the two-pass staged graph
(:mod:`bncourse.reference`) on the *same* (float32 / float16) values, so the errors measure
the implementation, not the rounding of the data.  The test suite asserts bncourse's errors
from these same cases; the numerics chapter plots them.
"""

import argparse

import numpy as np

from .. import numpy as bnp
from . import reference
from .tolerance import max_err

Y_BOUND = {"float32": 1e-5, "float16": 2e-3}     # issue #2's target; float16: its own rounding


def _sorted_rows(a):
    return np.sort(a, axis=0)


# name → (dtype, shape, maker(rng, shape) -> float64 values before the cast)
CASES = {
    "2-D, mean 1e4, std 1": ("float32", (4096, 64), lambda r, s: 1e4 + r.standard_normal(s)),
    "NCHW, mean 1e4, std 1": ("float32", (16, 8, 32, 32), lambda r, s: 1e4 + r.standard_normal(s)),
    "2-D, mean -3e4, std 3": ("float32", (4096, 64), lambda r, s: -3e4 + 3 * r.standard_normal(s)),
    "2-D, mean 1e8, std 100": ("float32", (4096, 64), lambda r, s: 1e8 + 100 * r.standard_normal(s)),
    "2-D, constant 10000.1": ("float32", (512, 16), lambda r, s: np.full(s, 10000.1)),
    "NCHW, constant 10000.1": ("float32", (8, 4, 16, 16), lambda r, s: np.full(s, 10000.1)),
    "2-D, sorted rows, mean 1e4": ("float32", (65536, 4),
                                   lambda r, s: _sorted_rows(1e4 + r.standard_normal(s))),
    "2-D, 1e7 values per channel": ("float32", (10_000_000, 1), lambda r, s: 1e4 + r.standard_normal(s)),
    "NCHW, 1e7 values per channel": ("float32", (10, 1, 1000, 1000), lambda r, s: 1e4 + r.standard_normal(s)),
    "float16, mean 300, std 1": ("float16", (1024, 16), lambda r, s: 300 + r.standard_normal(s)),
    "float16, mean 6e4, std 100": ("float16", (1024, 16), lambda r, s: 6e4 + 100 * r.standard_normal(s)),
    "float16, +-65000": ("float16", (1024, 16), lambda r, s: r.choice([-65000.0, 65000.0], s)),
}


def make_case(name, seed=0):
    """The input array of a case (in its dtype), reproducible from ``seed``."""
    dtype, shape, maker = CASES[name]
    return np.clip(maker(np.random.default_rng(seed), shape), -65504, 65504).astype(dtype) \
        if dtype == "float16" else maker(np.random.default_rng(seed), shape).astype(dtype)


def exact(x, dy=None, eps=1e-5):
    """Float64 two-pass output (and input gradient for ``dy``) on x's own values."""
    y, nodes = reference.forward(x.astype(np.float64), eps=eps)
    if dy is None:
        return y, None
    return y, reference.backward(dy.astype(np.float64), nodes)[0]


def ours(x, dy=None, eps=1e-5):
    y, cache = bnp.batch_norm_forward(x, eps=eps)
    return y, (None if dy is None else bnp.batch_norm_backward(dy, cache)[0])


def pytorch(x, dy=None, eps=1e-5):
    """PyTorch's CPU kernel on the same values (float16 runs through float32, as CPU autocast
    would); None if torch is not installed."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    work = np.float32 if x.dtype == np.float16 else x.dtype
    tx = torch.from_numpy(x.astype(work)).requires_grad_(dy is not None)
    y = F.batch_norm(tx, None, None, training=True, eps=eps)
    if dy is None:
        return y.detach().numpy().astype(x.dtype), None
    y.backward(torch.from_numpy(dy.astype(work)))
    return y.detach().numpy().astype(x.dtype), tx.grad.numpy().astype(x.dtype)


def max_error(a, e, relative=False):
    """max |a − e| (divided by max |e| if ``relative``), inf if a has inf/NaN."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return float("inf")
    err = max_err(a, e)
    return err / max(float(np.max(np.abs(e))), 1e-300) if relative else err


def errors(name, with_grad=False, seed=0):
    """{"ours": (max |y − y_exact|, max |dx − dx_exact| / max |dx_exact|), "torch": ...} for
    one case; dx errors are None unless ``with_grad``."""
    x = make_case(name, seed)
    dy = np.random.default_rng(seed + 1).standard_normal(x.shape).astype(x.dtype) if with_grad else None
    ey, edx = exact(x, dy)
    out = {}
    for label, impl in (("ours", ours), ("torch", pytorch)):
        res = impl(x, dy)
        if res is None:
            continue
        y, dx = res
        out[label] = (max_error(y, ey), None if dx is None else max_error(dx, edx, relative=True))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bncourse.accuracy",
                                description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--grad", action="store_true",
                   help="also measure the input gradient dx (default: the output y only)")
    args = p.parse_args(argv)
    print(f"{'case':32s} {'dtype':>7} | {'ours max|y-exact|':>18} {'torch':>10}"
          + (f" | {'ours dx rel. err.':>19} {'torch':>10}" if args.grad else ""))
    for name in CASES:
        e = errors(name, with_grad=args.grad)
        t = e.get("torch", (float("nan"), float("nan")))
        line = f"{name:32s} {CASES[name][0]:>7} | {e['ours'][0]:18.2e} {t[0]:10.2e}"
        if args.grad:
            line += f" | {e['ours'][1]:19.2e} {t[1]:10.2e}"
        print(line)


if __name__ == "__main__":
    main()
