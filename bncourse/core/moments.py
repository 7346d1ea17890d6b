"""The sufficient statistics (n, μ, M2) of a set of values and Chan et al.'s merge.

Partial results — tiles, threads, the processes of a distributed batch norm, the chunks of a
streaming accumulator (:class:`bncourse.course.stats.Welford`) — are added up with
:func:`merge`, which adds only non-negative terms.  Written once against the array API.
"""

from dataclasses import dataclass


@dataclass
class Moments:
    """The sufficient statistics of a set of values: count n, mean μ, and M2 = Σ (x − μ)².

    ``mean`` and ``m2`` are arrays (one entry per reduced-away position, e.g. per channel);
    ``n`` is a Python int.  Two ``Moments`` of disjoint data combine with :func:`merge`.
    """

    n: int
    mean: object
    m2: object

    def var(self, correction=0):
        """M2 / (n − correction): biased for 0, unbiased (Bessel) for 1."""
        return self.m2 / (self.n - correction)


def merge(a, b):
    """Chan et al.'s pairwise combination: the :class:`Moments` of the union of two
    disjoint parts a and b.

    With n = n_a + n_b and δ = μ_b − μ_a:
        μ = μ_a + δ·n_b/n,   M2 = M2_a + M2_b + δ²·n_a·n_b/n.
    The δ² term is the spread *between* the parts' means; it is why partial variances
    cannot simply be averaged.
    """
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    m2 = a.m2 + b.m2 + delta * delta * (a.n * b.n / n)
    return Moments(n, mean, m2)
