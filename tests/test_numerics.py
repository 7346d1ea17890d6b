"""Issue #2, item 6: statistics stay exact on adversarial inputs — huge means, constant
channels, float16 near its top, 10^7 values per channel, sorted data — for outputs and input
gradients, against float64 two-pass references on the same values (bncourse.accuracy)."""

import numpy as np
import pytest

from bncourse import accuracy

LONG = [name for name in accuracy.CASES if "1e7" in name]


@pytest.mark.parametrize("name", [n for n in accuracy.CASES if n not in LONG] + LONG)
def test_outputs_and_gradients_match_exact_reference(name):
    dtype = accuracy.CASES[name][0]
    err_y, err_dx = accuracy.errors(name, with_grad=True)["ours"]
    assert err_y <= accuracy.Y_BOUND[dtype], f"max |y - y_exact| = {err_y:.3g}"
    # gradients to the same standard, relative to the gradient's own scale
    assert err_dx <= accuracy.Y_BOUND[dtype], f"max |dx - dx_exact| / max |dx_exact| = {err_dx:.3g}"


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
