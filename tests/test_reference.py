"""The staged graph of bncourse.course.reference: forward equals the closed form, its backward
equals the closed-form backward and central finite differences (float64)."""

from conftest import assert_close
import numpy as np
import pytest

from bncourse.course import reference
import bncourse.numpy as bnp


def _loss_and_grad(x, gamma, beta, w):
    """L = Σ w·BN(x): a loss whose gradient is not trivially zero (Σ BN(x) would be)."""
    y, nodes = reference.forward(x, gamma, beta)
    return float(np.sum(w * y)), reference.backward(w, nodes)


@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 5), (3, 2, 4, 3), (2, 2, 3, 2, 2)])
def test_staged_forward_and_backward_equal_the_closed_form(rng, shape):
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    dy = rng.standard_normal(shape)
    y, nodes = reference.forward(x, gamma, beta)
    dx, dgamma, dbeta, grads = reference.backward(dy, nodes)
    by, cache = bnp.batch_norm_forward(x, gamma, beta)
    bdx, bdg, bdb = bnp.batch_norm_backward(dy, cache)
    assert_close(y, by, "float64", what="y")
    assert_close(dx, bdx, "float64", what="dx")
    assert_close(dgamma, bdg, "float64", what="dgamma")
    assert_close(dbeta, bdb, "float64", what="dbeta")
    assert_close(dx, reference.closed_form_backward(dy, nodes), "float64", what="collapsed formula")
    assert set(grads) >= {"mean", "centered", "squared", "var", "std", "inv_std", "xhat", "scaled"}


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 3, 2)])
def test_backward_matches_central_finite_differences(rng, shape):
    x = rng.standard_normal(shape) * 1.5 + 0.5
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    w = rng.standard_normal(shape)
    _, (dx, dgamma, dbeta, _) = _loss_and_grad(x, gamma, beta, w)
    h = 1e-6

    def numeric(array, index):
        old = array[index]
        array[index] = old + h
        up = _loss_and_grad(x, gamma, beta, w)[0]
        array[index] = old - h
        down = _loss_and_grad(x, gamma, beta, w)[0]
        array[index] = old
        return (up - down) / (2 * h)

    num_dx = np.array([numeric(x, i) for i in np.ndindex(x.shape)]).reshape(x.shape)
    num_dg = np.array([numeric(gamma, (c,)) for c in range(shape[1])])
    num_db = np.array([numeric(beta, (c,)) for c in range(shape[1])])
    # central differences: truncation O(h²) and rounding O(eps/h) ≈ 1e-10 at this scale
    assert_close(dx, num_dx, rtol=1e-7, what="dx")
    assert_close(dgamma, num_dg, rtol=1e-7, what="dgamma")
    assert_close(dbeta, num_db, rtol=1e-7, what="dbeta")


def test_loss_sum_of_outputs_has_zero_input_gradient(rng):
    """The trap the book shows: L = Σ BN(x) is constant in x (Σ x̂ = 0 per channel)."""
    x = rng.standard_normal((8, 3))
    _, nodes = reference.forward(x)
    dx, _, _, _ = reference.backward(np.ones_like(x), nodes)
    assert np.max(np.abs(dx)) < 1e-14
