"""Accurate statistics with torch ops (CPU and CUDA alike): the numerics of ``bncourse.torch``.

(Here rather than in ``bncourse/torch/`` so that the book can show it from a public module.)
The approach is the one of
:mod:`bncourse.kernels.numpy_tiles` (read its docstring first), written
with tensor operations.  For the m values that share a statistic:

* a *reference* r close to the data: the float64 mean of a strided sample, rounded to the
  compute dtype (float16/bfloat16 data are computed in float32);
* t = x − r in the compute dtype (exact to one rounding of a *deviation*, not of x);
* A = Σ t and B = Σ t², accumulated in float64 (:func:`sum64`);
* μ = r + A/m,  M2 = B − A²/m,  σ² = M2/m (biased).

The relative error of M2 is about κ·u with κ = B/M2 = 1 + (μ − r)²/σ²; when the sample was
unlucky (κ > ``KAPPA_MAX`` of :mod:`bncourse.core.policy`: sorted or bimodal data, a
constant channel not equal to r) the sums are taken again around r = μ, which is then known
well enough to make κ ≈ 1 (the loop and its test, :func:`bncourse.core.policy.shifted_moments`
and :func:`~bncourse.core.policy.needs_recentring`, are the NumPy tiles' too).  That check
reads one boolean from the device (a host synchronization on CUDA).

Statistics computed on different processes are combined with Chan et al.'s pairwise update
(:func:`bncourse.core.moments.merge`), which adds only non-negative terms.
"""

from dataclasses import dataclass
import math

import torch

from .policy import KAPPA_MAX, REFERENCE_SAMPLE, compute_dtype, shifted_moments  # noqa: F401 (re-exported)

RUN = 1 << 14          # values per low-precision partial sum before it is added in float64
CHUNK = 1 << 18        # elements per block of a product a·b reduced by sum64


def count(shape, dims):
    """m: how many values of a tensor of ``shape`` share one statistic over ``dims``."""
    return math.prod(shape[d] for d in dims)


def sum64(a, dims, b=None):
    """Σ a (or Σ a·b) over ``dims`` (keepdim), accumulated in float64.

    The first reduced dim is cut into blocks; each block is reduced in a's dtype (a float32
    partial sum of at most ``RUN`` values per statistic when the other reduced dims allow)
    and the partial sums are added in float64.  ``torch.sum(..., dtype=torch.float64)``
    would convert every element (~20x slower on CPU).  Blocks also bound the temporary
    a·b to ``CHUNK`` elements: a fresh full-size temporary costs more than the arithmetic.
    """
    if not dims:
        return (a if b is None else a * b).double()
    d0 = dims[0]
    size = a.shape[d0]
    per_index = a.numel() // size if size else 0          # elements under one index of d0
    rows = max(1, min(RUN // max(1, count(a.shape, dims[1:])), CHUNK // max(1, per_index)))
    parts = []
    for start in range(0, max(size, 1), rows):
        n = min(rows, size - start)
        block = a.narrow(d0, start, n)
        if b is not None:
            block = block * b.narrow(d0, start, n)
        parts.append(block.sum(dims, keepdim=True))
    return parts[0].double() if len(parts) == 1 else \
        torch.cat(parts, d0).sum(d0, keepdim=True, dtype=torch.float64)


def reference_shift(x, dims):
    """Per-statistic float64 mean of a strided sample of about ``REFERENCE_SAMPLE`` values
    (keepdim)."""
    per_dim = max(2, math.ceil(REFERENCE_SAMPLE ** (1.0 / len(dims))))
    index = [slice(None)] * x.ndim
    for d in dims:
        index[d] = slice(None, None, max(1, x.shape[d] // per_dim))
    return x[tuple(index)].mean(dims, keepdim=True, dtype=torch.float64)


@dataclass
class ShiftedMoments:
    """Local statistics of one tensor, keepdim-shaped (one entry per statistic): the
    (n, μ, M2) of :class:`bncourse.core.moments.Moments` plus the shift they were summed around."""

    count: int        # m
    ref: object       # r in the compute dtype, or None (RMS norm: sums of x itself)
    mean: object      # μ, float64, or None without centering
    m2: object        # Σ (x − μ)², float64 (without centering: Σ x²)
    shifted: object   # t = x − r in the compute dtype (x itself without centering)


def moments(x, dims, center=True):
    """Count, mean and M2 of ``x`` over ``dims`` by shifted sums (module docstring)."""
    cdt = compute_dtype(x.dtype)
    m = count(x.shape, dims)
    xc = x.to(cdt)
    if not center:                               # RMS norm: M2 holds Σ x²
        return ShiftedMoments(m, None, None, sum64(xc, dims, xc), xc)
    if m == 0:                                   # an empty local batch (distributed ranks)
        zeros = sum64(xc, dims)                  # float64 zeros of the statistics' shape
        return ShiftedMoments(0, zeros.to(cdt), zeros, zeros.clone(), xc)

    def sum_around(ref):                         # float64 guess -> sums around r
        r = ref.to(cdt)
        t = xc - r
        return r.double(), sum64(t, dims), sum64(t, dims, t), (r, t)

    mean, m2, (ref, t) = shifted_moments(sum_around, reference_shift(xc, dims), m)
    return ShiftedMoments(m, ref, mean, m2, t)
