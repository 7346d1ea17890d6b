"""The NumPy fast path for training-mode batch norm: cache-sized tiles, threads, exact stats.

Accuracy.  A float32 statistic cannot be summed naively: with |mean|/std = 1e4 the one-pass
E[x²] − E[x]² loses every digit, and even the mean accumulated in float32 is off by many
ulps.  So, per channel, we pick a *reference* r close to the data (the mean of a strided
sample), and sum t = x − r and t² in the input precision in short runs (at most
``RUN_ROWS`` rows or ``MAX_RUN`` values per float32 partial sum) that are added up in
float64:

    A = Σ (x − r),   B = Σ (x − r)²,   μ = r + A/m,   M2 = B − A²/m,   σ² = M2/m.

The relative error of M2 is about κ·(rounding of a short float32 run), κ = B/M2 =
1 + (μ − r)²/σ², so r only has to be within a few σ of μ.  If the sample was unlucky
(κ > ``KAPPA_MAX``, e.g. adversarially ordered data) the pass is repeated with r = μ
(:func:`bncourse.core.policy.shifted_moments`, the loop shared with torch), which
is then known well enough to make κ ≈ 1: the statistics are always as good as a float64
two-pass computation's, to a few float32 roundings of the *deviations*.

The normalization reuses t:  y = t·s + (β + (r − μ)·s)  with s = γ/sqrt(σ² + ε), so the large
common offset is never rounded to the input precision (x·s − μ·s would lose it).

Speed.  A tile is small enough to stay in a core's cache while it is shifted and reduced
(sums are BLAS matrix-vector products with a vector of ones); tiles are shared out to threads
(NumPy releases the GIL).  The forward pass reads x twice and writes y once; the backward
pass reads x and dy twice and writes dx once — as PyTorch's CPU kernel does.

Layouts of a C-contiguous input (N, C, *spatial), L = prod(spatial):

* ``columns`` (L == 1): x is the matrix (N, C); a tile is a band of rows; channel c is
  reduced down column c.
* ``planes`` (L > 1): x is the matrix (N·C·K, L/K) whose rows are the planes x[n, c] cut
  into K equal segments of at most ``MAX_RUN`` values; each row is reduced on its own.
"""

from dataclasses import dataclass
import math

import numpy as np

from ..core.policy import REFERENCE_SAMPLE, compute_dtype, shifted_moments
from . import threads as _threads

TILE_BYTES = 256 * 1024         # input bytes per tile: tile + output stay in a 1 MiB L2
THREAD_MIN_BYTES = 2 * 2**20    # below this, waking a second thread costs more than it saves
RUN_ROWS = 64                   # columns layout: rows per float32 partial sum
MAX_RUN = 16384                 # planes layout: values per float32 partial sum
MIN_SEGMENT = 256               # planes: shorter segments (an awkward L) use the generic path


def _segments(L):
    """Smallest K dividing L with L/K <= MAX_RUN, or None if the segments would be tiny."""
    if L <= MAX_RUN:
        return 1
    for K in range(math.ceil(L / MAX_RUN), L + 1):
        if L % K == 0:
            return K if L // K >= MIN_SEGMENT else None


def supports(x):
    """Whether the fast path handles ``x`` (else the generic float64 path runs)."""
    return x.dtype.name in ("float16", "float32", "float64") and _segments(math.prod(x.shape[2:])) is not None


@dataclass(frozen=True)
class TilePlan:
    """How a C-contiguous (N, C, *spatial) array is cut into tiles of whole matrix rows.

    The channel of a matrix row repeats with a period (one tile's rows for columns, a whole
    number of samples' C·K rows for planes) and no tile crosses a period boundary, so every per-channel
    operand of a tile is a slice of one (period, row_len) *pattern*.
    """

    layout: str        # "columns" or "planes"
    N: int
    C: int
    K: int             # planes: segments per plane (1 for columns)
    row_len: int       # columns: C; planes: L / K
    period: int        # rows after which the channel layout repeats
    tiles: tuple       # ((r0, r1), ...) row bands of the matrix view
    threads: int

    @property
    def rows(self):
        return self.N if self.layout == "columns" else self.N * self.C * self.K

    @property
    def count(self):
        """m, the values per channel."""
        return self.N if self.layout == "columns" else self.N * self.K * self.row_len

    def matrix(self, a):
        """The 2-D view (rows, row_len) of a C-contiguous array of this plan's shape."""
        return a.reshape(self.rows, self.row_len)

    def pattern(self, v, dtype):
        """A per-channel vector (C,) laid out as one period of the matrix, (period, row_len).

        Materialized when the pattern is reused by at least 4 periods: NumPy runs a ufunc on
        two same-shape contiguous operands 2-3x faster than on a broadcast row or column.
        Otherwise a zero-copy broadcast view."""
        v = v.astype(dtype)
        if self.layout == "planes":
            samples = self.period // (self.C * self.K)        # row n·C·K + c·K + k holds v[c]
            v = np.tile(np.repeat(v, self.K), samples)[:, None]
        view = np.broadcast_to(v, (self.period, self.row_len))
        return np.ascontiguousarray(view) if self.rows >= 4 * self.period else view

    @staticmethod
    def part(pattern, r0, r1):
        """The slice of a pattern that lines up with tile rows r0:r1."""
        start = r0 % pattern.shape[0]
        return pattern[start:start + (r1 - r0)]

    def channel_sums(self, a):
        """Planes: per-row float64 sums (rows,) added up per channel (C,)."""
        return a.reshape(self.N, self.C, self.K).sum(axis=(0, 2))


def make_plan(shape, itemsize):
    N, C = shape[0], shape[1]
    L = math.prod(shape[2:])
    if L == 1:
        layout, K, row_len, rows = "columns", 1, C, N
        per_tile = max(RUN_ROWS, TILE_BYTES // (C * itemsize) // RUN_ROWS * RUN_ROWS)
        period = per_tile
    else:
        K = _segments(L)
        layout, row_len, rows = "planes", L // K, N * C * K
        per_tile = max(1, TILE_BYTES // (row_len * itemsize))
        period = C * K * max(1, per_tile // (C * K))          # whole samples per period
    tiles = []
    for p in range(0, rows, period):                 # equal tiles within each period
        span = min(period, rows - p)
        n = math.ceil(span / per_tile)
        cuts = [p + span * i // n for i in range(n + 1)]
        if layout == "columns":                      # keep whole runs of RUN_ROWS rows
            cuts = [p + min(span, (c - p) // RUN_ROWS * RUN_ROWS) for c in cuts[:-1]] + [p + span]
        tiles += [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    threads = 1 if N * C * L * itemsize < THREAD_MIN_BYTES else _threads.get_num_threads()
    return TilePlan(layout, N, C, K, row_len, period, tuple(tiles), threads)


_ONES: dict = {}     # (n, dtype) -> a read-only vector of ones


def _ones(n, dtype, _cache=_ONES):
    key = (n, np.dtype(dtype).str)
    v = _cache.get(key)
    if v is None:
        v = _cache[key] = np.ones(n, dtype=dtype)
    return v


def _run(plan, tile_fn, reverse=False):
    """Call ``tile_fn(g, r0, r1)`` for every tile g, in parallel over contiguous chunks.

    ``reverse`` walks each chunk backwards: the tiles the previous sweep touched last are
    the ones still in the shared last-level cache.
    """
    def work(chunk):
        for g, (r0, r1) in (reversed(chunk) if reverse else chunk):
            tile_fn(g, r0, r1)
    _threads.run_chunks(work, list(enumerate(plan.tiles)), plan.threads)


def _column_sums(a):
    """Σ over the rows of a (rows, C) band, in float32 runs of ≤ RUN_ROWS rows, as float64."""
    runs = math.gcd(RUN_ROWS, a.shape[0])          # the run count must divide the rows
    partial = np.matmul(_ones(runs, a.dtype), a.reshape(runs, -1))     # (rows/runs · C,)
    return partial.reshape(-1, a.shape[1]).sum(axis=0, dtype=np.float64)


def _column_dots(a, b):
    """Σ a·b over the rows of (rows, C) bands, in runs as :func:`_column_sums`."""
    runs = math.gcd(RUN_ROWS, a.shape[0])
    partial = np.einsum("ij,ij->j", a.reshape(runs, -1), b.reshape(runs, -1))
    return partial.reshape(-1, a.shape[1]).sum(axis=0, dtype=np.float64)


# ----------------------------------------------------------------------------- statistics


def reference_shift(X3):
    """Per-channel mean of a strided sample of (N, C, L) data, float64: the shift r."""
    N, C, L = X3.shape
    sample = X3[:: max(1, N // REFERENCE_SAMPLE), :, :: max(1, L // REFERENCE_SAMPLE)]
    return sample.mean(axis=(0, 2), dtype=np.float64)


def _centered_sums(plan, X, T, R, DY=None):
    """One sweep over the tiles: T = X − r (R: the pattern of r), then per channel, in
    float64, (Σ T, Σ T²) — or, given DY, (Σ DY, Σ DY·T) for the backward pass."""
    dt = X.dtype
    part = plan.part
    if plan.layout == "planes":
        ones = _ones(plan.row_len, dt)
        S1, S2 = np.empty(plan.rows), np.empty(plan.rows)

        def tile(g, r0, r1):
            t = T[r0:r1]
            np.subtract(X[r0:r1], part(R, r0, r1), out=t)
            a = t if DY is None else DY[r0:r1]
            S1[r0:r1] = np.matmul(a, ones)
            S2[r0:r1] = np.vecdot(a, t)
        _run(plan, tile)
        return plan.channel_sums(S1), plan.channel_sums(S2)

    S1, S2 = np.empty((len(plan.tiles), plan.C)), np.empty((len(plan.tiles), plan.C))

    def tile(g, r0, r1):
        t = T[r0:r1]
        np.subtract(X[r0:r1], part(R, r0, r1), out=t)
        a = t if DY is None else DY[r0:r1]
        S1[g] = _column_sums(a)
        S2[g] = _column_dots(a, t)
    _run(plan, tile)
    return S1.sum(axis=0), S2.sum(axis=0)


def statistics(plan, X, T):
    """Per-channel (mean, biased var) of X (float64, (C,)) and the reference r (in X's
    dtype) they were computed around; T is left holding X − r."""

    def sum_around(ref):                          # (C,) float64 guess -> sums around r
        r = ref.astype(X.dtype)
        A, B = _centered_sums(plan, plan.matrix(X), plan.matrix(T), plan.pattern(r, X.dtype))
        return r.astype(np.float64), A, B, r

    ref = reference_shift(X.reshape(plan.N, plan.C, -1))
    mean, M2, r = shifted_moments(sum_around, ref, plan.count)   # recentred once if κ > KAPPA_MAX
    return mean, M2 / plan.count, r


# ----------------------------------------------------------------------------- forward


@dataclass
class FastCache:
    """What the fast backward needs: the (compute-dtype) input, the plan, the reference."""

    X: np.ndarray          # C-contiguous input in the compute dtype, shape as x
    plan: TilePlan
    r: np.ndarray          # (C,) reference the sums were taken around, compute dtype
    mean: np.ndarray       # (C,) float64
    var: np.ndarray        # (C,) float64, biased
    invstd: np.ndarray     # (C,) float64
    gamma: object          # (C,) or None
    beta_dtype: object     # dtype or None
    shape: tuple
    dtype: np.dtype        # dtype of x (and of y, dx)

    @property
    def count(self):
        return self.plan.count

    def backward(self, dy):
        return backward(dy, self)


def forward(x, gamma, beta, eps):
    """Training-mode batch norm of a NumPy array (validated by the caller): (y, FastCache)."""
    cdt = compute_dtype(x.dtype)
    X = np.ascontiguousarray(x, dtype=cdt)
    plan = make_plan(X.shape, cdt.itemsize)
    Y = np.empty_like(X)
    mean, var, r = statistics(plan, X, Y)                    # Y holds T = X − r
    invstd = 1.0 / np.sqrt(var + eps)
    scale = invstd if gamma is None else invstd * gamma.astype(np.float64)
    offset = (r.astype(np.float64) - mean) * scale
    if beta is not None:
        offset += beta.astype(np.float64)
    _affine_(plan, plan.matrix(Y), scale, offset)            # Y = T·scale + offset
    cache = FastCache(X, plan, r, mean, var, invstd, gamma,
                      None if beta is None else beta.dtype, tuple(x.shape), x.dtype)
    return (Y if Y.dtype == x.dtype else Y.astype(x.dtype)), cache


def _affine_(plan, A, scale, offset, D=None, k=None):
    """In place, per tile: A = A·scale + offset, or, given D and k, A = k·(D − (A·scale + offset));
    scale, offset, k are float64 per-channel vectors (C,), rounded to A's dtype."""
    S, OFF = plan.pattern(scale, A.dtype), plan.pattern(offset, A.dtype)
    Kp = None if k is None else plan.pattern(k, A.dtype)
    part = plan.part

    def tile(g, r0, r1):
        a = A[r0:r1]
        np.multiply(a, part(S, r0, r1), out=a)
        np.add(a, part(OFF, r0, r1), out=a)
        if D is not None:
            np.subtract(D[r0:r1], a, out=a)
            np.multiply(a, part(Kp, r0, r1), out=a)
    _run(plan, tile, reverse=True)


# ----------------------------------------------------------------------------- backward


def backward(dy, cache):
    """(dx, dgamma, dbeta) for :func:`forward`.

    With k = γ/σ̂, q = mean(dy), p = mean(dy·x̂) per channel and x̂ = (t + r − μ)/σ̂:
        dx = k·(dy − q − p·x̂) = k·(dy − (P·t + Q)),   P = p/σ̂,   Q = q + P·(r − μ).
    """
    plan, X = cache.plan, cache.X
    DY = np.ascontiguousarray(dy, dtype=X.dtype)
    DX = np.empty_like(X)
    sum_dy, sum_dy_t = _centered_sums(plan, plan.matrix(X), plan.matrix(DX), plan.pattern(cache.r, X.dtype),
                                      DY=plan.matrix(DY))
    r_minus_mean = cache.r.astype(np.float64) - cache.mean
    sum_dy_xhat = cache.invstd * (sum_dy_t + r_minus_mean * sum_dy)

    m = cache.count
    k = cache.invstd if cache.gamma is None else cache.invstd * cache.gamma.astype(np.float64)
    P = (sum_dy_xhat / m) * cache.invstd
    Q = sum_dy / m + P * r_minus_mean
    _affine_(plan, plan.matrix(DX), P, Q, D=plan.matrix(DY), k=k)   # DX = k·(DY − (P·T + Q))

    dgamma = None if cache.gamma is None else sum_dy_xhat.astype(cache.gamma.dtype)
    dbeta = None if cache.beta_dtype is None else sum_dy.astype(cache.beta_dtype)
    dx = DX if DX.dtype == cache.dtype else DX.astype(cache.dtype)
    return dx, dgamma, dbeta
