"""Properties of batch norm that hold for any input (hypothesis, float64):
Σ_batch dx = 0 and Σ_batch dx·x̂ = 0 per channel; invariance of the output under a positive
per-channel affine change of the input; on 2-D..5-D shapes, odd sizes, strided views."""

from hypothesis import given
from hypothesis import strategies as st
import numpy as np

from bncourse.core import closed_form as generic
import bncourse.numpy as bnp

shapes = st.integers(2, 5).flatmap(lambda nd: st.tuples(
    st.integers(1, 7), st.integers(1, 4), *[st.integers(1, 6)] * (nd - 2)
)).filter(lambda s: s[0] * int(np.prod(s[2:])) > 1)


@st.composite
def batches(draw):
    """(x, gamma, beta, dy) in float64; x possibly a non-contiguous view."""
    shape = draw(shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    strided = draw(st.booleans())
    loc = draw(st.sampled_from([0.0, 3.0, -1e3]))
    scale = draw(st.sampled_from([1e-2, 1.0, 50.0]))
    big = rng.standard_normal((shape[0] * (2 if strided else 1),) + shape[1:]) * scale + loc
    x = big[::2] if strided else big
    C = shape[1]
    return x, rng.uniform(0.2, 3, C), rng.standard_normal(C), rng.standard_normal(shape)


def _per_channel_sum(a):
    return a.sum(axis=generic.batch_axes(a.ndim))


def _condition(x, cache, eps=1e-5):
    """How much input rounding is amplified: max |x| over the normalizing std, per channel."""
    return np.maximum(1.0, np.abs(x).max(axis=generic.batch_axes(x.ndim)) / np.sqrt(cache.var + eps))


@given(batches())
def test_gradient_is_orthogonal_to_ones_and_to_xhat(batch):
    """Σ dx = 0 and Σ dx·x̂ = k·Σ(dy·x̂)·ε/(σ² + ε) per channel (= 0 when ε = 0)."""
    x, gamma, beta, dy = batch
    eps = 1e-5
    y, cache = bnp.batch_norm_forward(x, gamma, beta, eps=eps)
    dx, _, _ = bnp.batch_norm_backward(dy, cache)
    xhat = (x - generic.channel_view(cache.mean, x.ndim, np)) * generic.channel_view(cache.invstd, x.ndim, np)
    k = gamma * cache.invstd
    # the formula's terms k·dy, k·mean(dy), k·x̂·mean(dy·x̂) cancel: bound relative to them
    terms = k * _per_channel_sum(np.abs(dy)) * (2 + np.abs(xhat).max(axis=generic.batch_axes(x.ndim)))
    bound = 1e-13 * terms * _condition(x, cache) * np.sqrt(cache.count)
    assert np.all(np.abs(_per_channel_sum(dx)) <= bound)
    expected = k * _per_channel_sum(dy * xhat) * eps / (cache.var + eps)
    assert np.all(np.abs(_per_channel_sum(dx * xhat) - expected) <= bound * (1 + np.abs(xhat).max()))


@given(batches(), st.integers(0, 2**32 - 1))
def test_output_invariant_under_positive_affine_change_of_input(batch, seed):
    x, gamma, beta, _ = batch
    rng = np.random.default_rng(seed)
    C = x.shape[1]
    a = generic.channel_view(rng.uniform(0.1, 10, C), x.ndim, np)
    b = generic.channel_view(rng.uniform(-100, 100, C), x.ndim, np)
    eps = 1e-30                 # tiny next to every variance drawn, so "up to eps" is exact
    y1, c1 = bnp.batch_norm_forward(x, gamma, beta, eps=eps)
    y2, c2 = bnp.batch_norm_forward(a * x + b, gamma, beta, eps=eps)
    spread = c1.var > 1e-20     # a constant channel maps to β either way
    np.testing.assert_allclose(y2[:, spread], y1[:, spread], rtol=1e-9, atol=1e-9)


@given(batches())
def test_fast_path_equals_generic_path(batch):
    x, gamma, beta, dy = batch
    y, cache = bnp.batch_norm_forward(x, gamma, beta)
    gy, gcache = generic.batch_norm_forward(x, gamma, beta, 1e-5)
    dx, dg, db = bnp.batch_norm_backward(dy, cache)
    gdx, gdg, gdb = generic.norm_backward(dy, gcache)
    rtol = 1e-13 * _condition(x, gcache).max() * np.sqrt(gcache.count)   # conditioning-aware
    for a, e in [(y, gy), (dx, gdx), (dg, gdg), (db, gdb)]:
        np.testing.assert_allclose(a, e, rtol=0, atol=rtol * max(1.0, np.abs(e).max()))
