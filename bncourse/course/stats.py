"""Mean and variance four ways: the algorithms of the statistics chapter.

Every function reduces over ``axis`` (an int or a tuple of ints, as in NumPy) and computes
in the *input's dtype*, so that the algorithms' own rounding can be compared — cast the
input first (``x.astype(np.float64)``) for accurate answers.  They are written once against
the array API (``xp = array_namespace(x)``): NumPy, CuPy and, through array-api-compat,
PyTorch tensors.

For the m values reduced over, with M2 = Σ (x − μ)² the sum of squared deviations:

* :func:`one_pass_var` — the textbook  σ² = E[x²] − E[x]²,  one sweep over the data.  It
  subtracts two numbers of size μ² to get one of size σ²: with |μ|/σ = 1e4 in float32
  every digit cancels and the result can be negative ("catastrophic cancellation").
* :func:`two_pass_var` — μ first, then the mean of (x − μ)²: two sweeps, no cancellation.
* :func:`welford` — Welford (1962): one sweep, one value (one row along ``axis``) at a
  time, updating (n, μ, M2) without ever forming Σ x².
* :func:`merge` — Chan, Golub & LeVeque (1979): combine the (n, μ, M2) of two disjoint
  parts into the (n, μ, M2) of their union.  This is how partial results — tiles, threads,
  the devices of a distributed batch norm — are added up.  Welford's update is the special
  case where one part is a single value.
* :class:`Welford` — a streaming accumulator that takes chunks of any size: each chunk's
  (n, μ, M2) by two passes, merged into the running state.

``correction`` follows the array API's ``var``: 0 gives the *biased* variance M2/m (batch
norm normalizes with it), 1 the *unbiased* M2/(m − 1) (batch norm's ``running_var``).
"""

import math

from ..core.moments import Moments, merge
from ..core.xp import array_namespace

__all__ = ["Moments", "Welford", "merge", "moments", "one_pass_var", "two_pass_var", "welford"]


def _axes(x, axis):
    """``axis`` (int or tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % x.ndim for a in axes))


def _count(x, axes):
    return math.prod(x.shape[a] for a in axes)


def moments(x, axis=0):
    """(n, μ, M2) of ``x`` over ``axis`` by two passes, in x's dtype."""
    xp = array_namespace(x)
    axes = _axes(x, axis)
    n = _count(x, axes)
    mean = xp.sum(x, axis=axes, keepdims=True) / n         # pass 1
    d = x - mean
    m2 = xp.sum(d * d, axis=axes)                          # pass 2
    return Moments(n, xp.squeeze(mean, axis=axes), m2)


def one_pass_var(x, axis=0, correction=0):
    """σ² = (Σx²/m − (Σx/m)²)·m/(m − correction): one sweep, cancels when |μ| ≫ σ.

    Shown because it is everywhere (and fast); do not use it on raw activations.
    """
    xp = array_namespace(x)
    axes = _axes(x, axis)
    n = _count(x, axes)
    mean = xp.sum(x, axis=axes) / n
    mean_sq = xp.sum(x * x, axis=axes) / n                 # E[x²]: size μ² + σ²
    return (mean_sq - mean * mean) * (n / (n - correction))


def two_pass_var(x, axis=0, correction=0):
    """σ² = Σ (x − μ)² / (m − correction) with μ from a first pass: no cancellation."""
    return moments(x, axis).var(correction)


def welford(x, axis=0):
    """Welford's online algorithm along one ``axis``: returns :class:`Moments`.

    For k = 1, 2, ..., m and the k-th value (row) v:
        δ = v − μ,   μ ← μ + δ/k,   M2 ← M2 + δ·(v − μ_new).
    Each step touches one value, so it suits data that arrive one at a time.
    """
    xp = array_namespace(x)
    if not isinstance(axis, int):
        raise ValueError(f"welford streams along one axis, got axis={axis!r}")
    rows = xp.moveaxis(x, axis, 0)
    mean = xp.zeros(rows.shape[1:], dtype=x.dtype)
    m2 = xp.zeros(rows.shape[1:], dtype=x.dtype)
    for k in range(1, rows.shape[0] + 1):
        v = rows[k - 1, ...]
        delta = v - mean
        mean = mean + delta / k
        m2 = m2 + delta * (v - mean)                       # uses the *updated* mean
    return Moments(rows.shape[0], mean, m2)


class Welford:
    """A streaming accumulator of (n, μ, M2) over ``axis``; ``update`` takes chunks of any
    size (a single value included) and merges their two-pass moments into the state.

    >>> acc = Welford(axis=0)
    >>> for chunk in chunks:             # e.g. (rows_i, C) blocks of one (N, C) batch
    ...     acc.update(chunk)
    >>> acc.mean, acc.var(), acc.var(correction=1)
    """

    def __init__(self, axis=0):
        self.axis = axis
        self.state = Moments(0, None, None)

    def update(self, chunk):
        """Add one chunk of values; returns ``self``."""
        self.state = merge(self.state, moments(chunk, self.axis))
        return self

    def merge(self, other):
        """Add everything another accumulator has seen (e.g. another thread's or device's)."""
        self.state = merge(self.state, other.state)
        return self

    @property
    def n(self):
        return self.state.n

    @property
    def mean(self):
        return self.state.mean

    def var(self, correction=0):
        return self.state.var(correction)
