"""bncourse.course.stats: the four variance algorithms of the statistics chapter against float64
references — merge == statistics of the concatenation, Welford over chunks == two passes —
and the failure modes the chapter demonstrates (one-pass cancellation, float16 overflow)."""

from conftest import assert_close
import numpy as np
import pytest

from bncourse.course import stats

SHAPES_AXES = [((37, 5), 0), ((6, 4, 9), (0, 2)), ((5, 3, 4, 6), (0, 2, 3)), ((4, 7), 1),
               ((3, 4, 5), -1)]


def _data(rng, shape, loc=3.0, scale=2.0):
    return loc + scale * rng.standard_normal(shape)


def _reference(x, axis):
    """np.var / np.mean in float64 (two-pass, pairwise sums)."""
    x = x.astype(np.float64)
    return x.mean(axis=axis), x.var(axis=axis), x.var(axis=axis, ddof=1)


@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_two_pass_and_one_pass_match_numpy_in_float64(rng, shape, axis):
    x = _data(rng, shape)
    mean, var, var1 = _reference(x, axis)
    m = stats.moments(x, axis)
    assert m.n == x.size // mean.size
    assert_close(m.mean, mean, "float64", what="mean")
    assert_close(stats.two_pass_var(x, axis), var, "float64", what="two-pass biased")
    assert_close(stats.two_pass_var(x, axis, correction=1), var1, "float64", what="unbiased")
    # benign data (|mean|/std = 1.5): the one-pass formula is fine in float64
    assert_close(stats.one_pass_var(x, axis), var, "float64", rtol=1e-10, what="one-pass")
    assert_close(stats.one_pass_var(x, axis, correction=1), var1, "float64", rtol=1e-10)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_welford_matches_two_pass(rng, axis):
    x = _data(rng, (40, 6, 3))
    w = stats.welford(x, axis)
    mean, var, var1 = _reference(x, axis)
    assert w.n == x.shape[axis]
    assert_close(w.mean, mean, "float64", what="mean")
    assert_close(w.var(), var, "float64", what="biased")
    assert_close(w.var(1), var1, "float64", what="unbiased")


def test_welford_refuses_several_axes(rng):
    with pytest.raises(ValueError, match="one axis"):
        stats.welford(_data(rng, (4, 3, 2)), axis=(0, 2))


@pytest.mark.parametrize("sizes", [(1, 1), (1, 30), (17, 5, 1, 40), (100,)])
def test_merge_equals_statistics_of_the_concatenation(rng, sizes):
    parts = [_data(rng, (n, 4, 3), loc=rng.uniform(-50, 50), scale=rng.uniform(0.1, 5))
             for n in sizes]
    merged = stats.Moments(0, None, None)
    for p in parts:
        merged = stats.merge(merged, stats.moments(p, (0, 2)))
    whole = np.concatenate(parts, axis=0)
    mean, var, var1 = _reference(whole, (0, 2))
    assert merged.n == whole.shape[0] * whole.shape[2]
    assert_close(merged.mean, mean, "float64", what="mean")
    assert_close(merged.var(), var, "float64", what="biased")
    if merged.n > 1:
        assert_close(merged.var(1), var1, "float64", what="unbiased")


def test_merge_is_order_independent(rng):
    a, b, c = (stats.moments(_data(rng, (n, 3), loc=k), 0) for n, k in ((5, 0), (9, 10), (2, -7)))
    left = stats.merge(stats.merge(a, b), c)
    right = stats.merge(a, stats.merge(c, b))
    assert left.n == right.n
    assert_close(left.mean, right.mean, "float64")
    assert_close(left.m2, right.m2, "float64")


def test_merge_of_single_values_is_welfords_update(rng):
    """Chan's merge with a one-value part reduces to Welford's step."""
    x = _data(rng, (25, 4))
    acc = stats.Welford(axis=0)
    for row in x:
        acc.update(row[None, :])
    w = stats.welford(x, 0)
    assert acc.n == w.n == 25
    assert_close(acc.mean, w.mean, "float64")
    assert_close(acc.var(), w.var(), "float64")


@pytest.mark.parametrize("chunks", [1, 3, 8, 64])
def test_welford_over_chunks_equals_two_pass(rng, chunks):
    x = _data(rng, (64, 3, 5, 2), loc=-20.0)
    acc = stats.Welford(axis=(0, 2, 3))
    for part in np.array_split(x, chunks, axis=0):
        acc.update(part)
    mean, var, var1 = _reference(x, (0, 2, 3))
    assert acc.n == 64 * 5 * 2
    assert_close(acc.mean, mean, "float64", what="mean")
    assert_close(acc.var(), var, "float64", what="biased")
    assert_close(acc.var(correction=1), var1, "float64", what="unbiased")


def test_accumulators_merge_like_devices(rng):
    """Two accumulators (two devices), each fed chunks, merged: the statistics of all."""
    x = _data(rng, (50, 6), loc=1e3)
    dev0, dev1 = stats.Welford(), stats.Welford()
    for part in np.array_split(x[:20], 3):
        dev0.update(part)
    for part in np.array_split(x[20:], 4):
        dev1.update(part)
    dev0.merge(dev1)
    assert_close(dev0.var(), x.var(axis=0), "float64")
    assert_close(dev0.mean, x.mean(axis=0), "float64")


def test_float32_one_pass_cancels_and_the_others_do_not():
    """1e4 + N(0, 1) in float32: the one-pass formula has no correct digit (and goes
    negative); two passes and Welford keep the variance to better than 1e-2."""
    x = (1e4 + np.random.default_rng(0).standard_normal((4096, 16))).astype(np.float32)
    exact = x.astype(np.float64).var(axis=0)
    one = stats.one_pass_var(x)
    assert one.dtype == np.float32
    assert np.max(np.abs(one - exact) / exact) > 1.0
    assert np.any(one < 0)
    for v in (stats.two_pass_var(x), stats.welford(x).var(), stats.Welford().update(x).var()):
        assert v.dtype == np.float32
        assert np.max(np.abs(v - exact) / exact) < 1e-2


def test_float16_sums_overflow_unless_widened():
    """1024 float16 values near 300: Σx = 3e5 > 65504 overflows in float16; in float32 the
    same algorithm is fine."""
    x = (300 + np.random.default_rng(1).standard_normal((1024, 4))).astype(np.float16)
    exact = x.astype(np.float64).var(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(stats.two_pass_var(x)).any()
    v = stats.two_pass_var(x.astype(np.float32))
    assert_close(v, exact, rtol=1e-4)


def test_array_api_namespaces_other_than_numpy(torch):
    """The same functions on torch tensors through array-api-compat."""
    pytest.importorskip("array_api_compat")
    x = torch.randn(30, 4, 5, dtype=torch.float64) * 3 + 2
    ref = x.numpy().var(axis=(0, 2))
    assert isinstance(stats.two_pass_var(x, (0, 2)), torch.Tensor)
    assert_close(stats.two_pass_var(x, (0, 2)).numpy(), ref, "float64")
    assert_close(stats.one_pass_var(x, (0, 2)).numpy(), ref, "float64", rtol=1e-10)
    assert_close(stats.welford(x, 0).var().numpy(), x.numpy().var(axis=0), "float64")
    acc = stats.Welford(axis=(0, 2))
    for part in torch.split(x, 7, dim=0):
        acc.update(part)
    assert_close(acc.var(correction=1).numpy(), x.numpy().var(axis=(0, 2), ddof=1), "float64")
