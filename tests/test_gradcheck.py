"""bncourse.course.gradcheck: central differences are exact for quadratics, second-order accurate
in h, leave their input alone, and confirm batch norm's analytic gradient."""

import numpy as np
import pytest

from bncourse.course import gradcheck
import bncourse.numpy as bnp


def test_central_difference_is_exact_for_a_quadratic(rng):
    A = rng.standard_normal((4, 4))
    b = rng.standard_normal(4)
    x = rng.standard_normal(4)
    f = lambda z: 0.5 * z @ A @ z + b @ z
    grad = gradcheck.central_difference(f, x, h=1e-3)
    # the third derivative is 0: only rounding, about u·|f|/h
    np.testing.assert_allclose(grad, 0.5 * (A + A.T) @ x + b, rtol=0, atol=1e-11)


def test_truncation_error_is_second_order_in_h():
    f = lambda z: float(np.sum(np.sin(z)))
    x = np.array([0.3, 1.1, -0.7])
    errors = [np.max(np.abs(gradcheck.central_difference(f, x, h) - np.cos(x)))
              for h in (1e-2, 1e-3)]
    # error ≈ h²/6·|cos|: a tenth of h → a hundredth of the error
    assert 80 < errors[0] / errors[1] < 120


def test_input_is_not_modified_and_shape_is_kept(rng):
    x = rng.standard_normal((2, 3, 2))
    before = x.copy()
    grad = gradcheck.central_difference(lambda z: np.sum(z ** 2), x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-9, atol=1e-9)


def test_directional_difference_equals_the_inner_product(rng):
    x, v = rng.standard_normal((2, 5, 3))
    f = lambda z: float(np.sum(np.exp(z)))
    assert gradcheck.directional_difference(f, x, v) == pytest.approx(np.sum(np.exp(x) * v), rel=1e-9)


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 2)])
def test_batch_norm_gradient_matches_central_differences(rng, shape):
    x = rng.standard_normal(shape) + 2
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    w = rng.standard_normal(shape)
    loss = lambda z: np.sum(w * bnp.batch_norm_forward(z, gamma, beta)[0])
    _, cache = bnp.batch_norm_forward(x, gamma, beta)
    dx, _, _ = bnp.batch_norm_backward(w, cache)
    assert gradcheck.normwise_error(gradcheck.central_difference(loss, x), dx) < 1e-8


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="h must be > 0"):
        gradcheck.central_difference(np.sum, np.ones(2), h=0.0)
    with pytest.raises(ValueError, match="direction shape"):
        gradcheck.directional_difference(np.sum, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.normwise_error(np.ones(2), np.ones(3))
    assert gradcheck.normwise_error(np.ones(0), np.ones(0)) == 0.0
