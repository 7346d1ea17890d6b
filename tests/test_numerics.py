"""Issue #2, item 6: the traps that bncourse's statistics avoid, demonstrated on NumPy.
The adversarial inputs themselves (huge means, constant channels, float16 near its top,
10^7 values per channel, sorted data) are checked on every backend in test_backends.py."""

import numpy as np

from bncourse.course import accuracy


def test_float16_statistics_do_not_overflow():
    """np.var on float16 data around 300 overflows (Σx² > 65504); ours stays finite."""
    x = accuracy.make_case("float16, mean 300, std 1")
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.var(x, axis=0)).all()          # the trap, demonstrated
    y, _ = accuracy.ours(x)
    assert y.dtype == np.float16 and np.isfinite(y).all()


def test_one_pass_formula_fails_where_ours_does_not():
    """E[x²] − E[x]² in float32 on 1e4 + N(0,1): cancellation leaves no correct digit."""
    x = accuracy.make_case("2-D, mean 1e4, std 1")
    one_pass = (x * x).mean(axis=0) - x.mean(axis=0) ** 2        # float32 throughout
    exact = x.astype(np.float64).var(axis=0)
    assert np.max(np.abs(one_pass - exact) / exact) > 0.5
    y, _ = accuracy.ours(x)
    assert accuracy.max_error(y, accuracy.exact(x)[0]) <= 1e-5



from conftest import assert_close
import pytest

from bncourse.core import closed_form as generic
import bncourse.numpy as bnp


@pytest.mark.parametrize("shape", [(512, 6), (8, 6, 9, 40)])
@pytest.mark.parametrize("offset", [0.0, 1.6, 50.0])          # μ/σ
@pytest.mark.parametrize("dy_kind", ["random", "constant"])
def test_fast_backward_gradients_to_float32_tolerance(rng, shape, offset, dy_kind):
    """dx, dγ, dβ of the fast float32 path against the float64 closed form, also for a
    constant dy, whose exact dγ = Σ dy·x̂ is 0: summing dy·x unshifted would cancel there
    (tried: 20x the error of the shifted sums at μ = 1.6σ), so this guards the shift."""
    C = shape[1]
    z = rng.standard_normal(shape)
    axes = (0,) + tuple(range(2, len(shape)))
    z = (z - z.mean(axis=axes, keepdims=True)) / z.std(axis=axes, keepdims=True)
    x = (3.0 * (z + offset)).astype(np.float32)                     # σ = 3, μ = 3·offset
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
    dy = (rng.standard_normal(shape) if dy_kind == "random" else np.full(shape, 0.7)).astype(np.float32)
    _, cache = bnp.batch_norm_forward(x, gamma, np.zeros(C, np.float32))
    dx, dgamma, dbeta = bnp.batch_norm_backward(dy, cache)
    _, cache64 = generic.batch_norm_forward(x.astype(np.float64), gamma.astype(np.float64), np.zeros(C), 1e-5)
    dx64, dgamma64, dbeta64 = generic.norm_backward(dy.astype(np.float64), cache64)
    assert_close(dx, dx64, np.float32, what="dx")
    assert_close(dbeta, dbeta64, np.float32, what="dbeta")
    # dγ is a sum of m terms dy·x̂ (|x̂| ~ 1): the float32 bar relative to sqrt(Σ dy²)
    scale = np.sqrt(np.sum(dy.astype(np.float64) ** 2, axis=axes))
    assert np.all(np.abs(dgamma - dgamma64) <= 1e-5 * np.maximum(scale, np.abs(dgamma64)))


def test_recentring_decision_needs_no_division():
    """core.policy.needs_recentring is B > KAPPA_MAX·M2: M2 = 0 needs no special case (B > 0:
    the reference missed a constant; B = 0: it is the constant), NaN never recentres, and the
    NumPy tiles and torch share the loop (shifted_moments) that calls it."""
    import torch

    from bncourse.core import policy, torch_stats
    from bncourse.kernels import numpy_tiles

    K = policy.KAPPA_MAX
    assert policy.needs_recentring(np.array([1.0, 0.0]), np.array([1.0, 0.0])) is False
    assert policy.needs_recentring(np.array([1e-300]), np.array([0.0])) is True
    assert policy.needs_recentring(np.array([np.nan]), np.array([np.nan])) is False
    assert policy.needs_recentring(np.array([K]), np.array([1.0])) is False        # κ = K exactly
    assert policy.needs_recentring(torch.tensor([K * 1.5]), torch.tensor([1.0])) is True
    calls = []

    def sum_around(ref):                       # a constant 5 seen first from r = 0
        calls.append(float(ref[0]))
        t = np.full((4, 1), 5.0) - ref
        return np.asarray(ref, np.float64), t.sum(0), (t * t).sum(0), None

    mean, m2, _ = policy.shifted_moments(sum_around, np.zeros(1), 4)
    assert calls == [0.0, 5.0] and mean[0] == 5.0 and m2[0] == 0.0
    assert numpy_tiles.shifted_moments is policy.shifted_moments
    assert torch_stats.shifted_moments is policy.shifted_moments
