"""bncourse.numpy batch norm against torch.nn.functional.batch_norm / torch.nn.BatchNorm*d,
the float64 generic path, and the fast kernels against the generic path."""

from conftest import assert_close
import numpy as np
import pytest

from bncourse.core import closed_form as generic
from bncourse.kernels import numpy_tiles
import bncourse.numpy as bnp

SHAPES = [(8, 5), (3, 4, 7), (4, 3, 5, 6), (2, 3, 4, 5, 3), (256, 64), (2, 8, 131, 129),
          (2500, 256), (5000, 3, 5)]   # the last two: several tile periods and a ragged remainder
DTYPES = ["float64", "float32"]


def _inputs(rng, shape, dtype, affine=True):
    C = shape[1]
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape((1, C) + (1,) * (len(shape) - 2))
         + rng.uniform(-5, 5, C).reshape((1, C) + (1,) * (len(shape) - 2))).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy


def _torch_train(torch, x, gamma, beta, dy, eps=1e-5):
    """torch's forward and input/parameter gradients, computed in x's dtype."""
    import torch.nn.functional as F
    tx = torch.tensor(x, requires_grad=True)
    tg = None if gamma is None else torch.tensor(gamma, requires_grad=True)
    tb = None if beta is None else torch.tensor(beta, requires_grad=True)
    y = F.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
    y.backward(torch.tensor(dy))
    grad = lambda t: None if t is None else t.grad.numpy()
    return y.detach().numpy(), tx.grad.numpy(), grad(tg), grad(tb)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_training_matches_torch(torch, rng, shape, dtype, affine):
    x, gamma, beta, dy = _inputs(rng, shape, dtype, affine)
    y, cache = bnp.batch_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = bnp.batch_norm_backward(dy, cache)
    ty, tdx, tdg, tdb = _torch_train(torch, x, gamma, beta, dy)
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    assert_close(y, ty, dtype, what="y")
    assert_close(dx, tdx, dtype, what="dx")
    if affine:
        # Σ over m values: compare normwise to the sum's scale (sqrt(m)-sized values)
        assert_close(dgamma, tdg, dtype, what="dgamma")
        assert_close(dbeta, tdb, dtype, what="dbeta")
    else:
        assert dgamma is None and dbeta is None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_fast_path_matches_generic_path(rng, shape, dtype):
    """The blocked kernels agree with the float64 generic path to the output's precision."""
    x, gamma, beta, dy = _inputs(rng, shape, dtype)
    y, cache = numpy_tiles.forward(x, gamma, beta, 1e-5)
    dx, dg, db = numpy_tiles.backward(dy, cache)
    gy, gcache = generic.batch_norm_forward(x, gamma, beta, 1e-5)
    gdx, gdg, gdb = generic.norm_backward(dy, gcache)
    for a, e, name in [(y, gy, "y"), (dx, gdx, "dx"), (dg, gdg, "dgamma"), (db, gdb, "dbeta")]:
        assert a.dtype == e.dtype, name
        assert_close(a, e, dtype, what=name)
    # statistics: exact to a few roundings of the *deviations* in the compute precision
    unit = 1e-13 if dtype == "float64" else 1e-6
    sigma = np.sqrt(gcache.var)
    assert np.all(np.abs(cache.mean - gcache.mean) <= unit * sigma)
    assert np.all(np.abs(cache.var - gcache.var) <= unit * gcache.var)


def test_dispatch_uses_the_fast_kernels_for_numpy(rng):
    x, gamma, beta, _ = _inputs(rng, (4, 3, 5), "float32")
    assert isinstance(bnp.batch_norm_forward(x, gamma, beta)[1], numpy_tiles.FastCache)


@pytest.mark.parametrize("make_view", [
    lambda a: a[:, :, ::2],                     # strided spatial axis
    lambda a: np.swapaxes(a, 2, 3),             # transposed spatial axes
    lambda a: a[::2],                           # every other sample
    lambda a: np.asfortranarray(a),             # Fortran order
])
def test_non_contiguous_inputs(torch, rng, make_view):
    base, gamma, beta, base_dy = _inputs(rng, (6, 3, 8, 7), "float64")
    x, dy = make_view(base), make_view(base_dy)
    assert not x.flags.c_contiguous
    y, cache = bnp.batch_norm_forward(x, gamma, beta)
    dx, dg, db = bnp.batch_norm_backward(dy, cache)
    ty, tdx, tdg, tdb = _torch_train(torch, np.ascontiguousarray(x), gamma, beta, np.ascontiguousarray(dy))
    assert_close(y, ty, "float64", what="y")
    assert_close(dx, tdx, "float64", what="dx")
    assert_close(dg, tdg, "float64", what="dgamma")


@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_matches_torch(torch, rng, dtype):
    import torch.nn.functional as F
    x, gamma, beta, _ = _inputs(rng, (5, 4, 6), dtype)
    rm = rng.standard_normal(4).astype(dtype)
    rv = rng.uniform(0.5, 2, 4).astype(dtype)
    y = bnp.batch_norm_inference(x, rm, rv, gamma, beta, eps=1e-3)
    ty = F.batch_norm(torch.tensor(x), torch.tensor(rm), torch.tensor(rv), torch.tensor(gamma),
                      torch.tensor(beta), training=False, eps=1e-3)
    assert_close(y, ty.numpy(), dtype, what="y")


# ----------------------------------------------------------------------------- the layer


TORCH_MODULES = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}


@pytest.mark.parametrize("shape", [(16, 5), (8, 5, 7), (4, 5, 6, 3), (2, 5, 3, 4, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_layer_matches_torch_module_over_training_then_eval(torch, rng, shape, dtype, momentum):
    C = shape[1]
    ours = bnp.BatchNorm(C, momentum=momentum, dtype=dtype)
    theirs = getattr(torch.nn, TORCH_MODULES[len(shape)])(C, momentum=momentum, dtype=getattr(torch, dtype))
    with torch.no_grad():
        w = rng.uniform(0.5, 2, C).astype(dtype)
        b = rng.standard_normal(C).astype(dtype)
        theirs.weight.copy_(torch.tensor(w))
        theirs.bias.copy_(torch.tensor(b))
    ours.gamma[...] = w
    ours.beta[...] = b
    for step in range(4):
        x, _, _, dy = _inputs(rng, shape, dtype)
        x = x + step                                        # statistics that drift
        y = ours(x)
        dx = ours.backward(dy)
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(dy))
        assert_close(y, ty.detach().numpy(), dtype, what=f"y step {step}")
        assert_close(dx, tx.grad.numpy(), dtype, what=f"dx step {step}")
        assert_close(ours.grads["gamma"], theirs.weight.grad.numpy(), dtype, what="dgamma")
        assert_close(ours.grads["beta"], theirs.bias.grad.numpy(), dtype, what="dbeta")
        theirs.weight.grad = theirs.bias.grad = None
        assert_close(ours.running_mean, theirs.running_mean.numpy(), dtype, what="running_mean")
        assert_close(ours.running_var, theirs.running_var.numpy(), dtype, what="running_var")
        assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == step + 1
        assert ours.running_mean.dtype == np.dtype(dtype)
    ours.eval()
    theirs.eval()
    x, _, _, dy = _inputs(rng, shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(dy))
    assert_close(ours(x), ty.detach().numpy(), dtype, what="eval y")
    assert_close(ours.backward(dy), tx.grad.numpy(), dtype, what="eval dx (frozen statistics)")
    assert_close(ours.grads["gamma"], theirs.weight.grad.numpy(), dtype, what="eval dgamma")
    assert ours.num_batches_tracked == 4                    # eval does not count


def test_running_var_is_unbiased_and_momentum_weights_the_new_value(rng):
    x = rng.standard_normal((10, 3))
    layer = bnp.BatchNorm(3, momentum=0.25, dtype="float64")
    layer(x)
    np.testing.assert_allclose(layer.running_mean, 0.25 * x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(layer.running_var, 0.75 + 0.25 * x.var(0, ddof=1), rtol=1e-13)


def test_momentum_none_is_the_cumulative_average(rng):
    layer = bnp.BatchNorm(2, momentum=None, dtype="float64")
    batches = [rng.standard_normal((6, 2)) * (k + 1) + k for k in range(5)]
    for xb in batches:
        layer(xb)
    np.testing.assert_allclose(layer.running_mean, np.mean([b.mean(0) for b in batches], 0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, np.mean([b.var(0, ddof=1) for b in batches], 0), rtol=1e-12)


def test_track_running_stats_false_uses_batch_statistics_in_eval(torch, rng):
    x = rng.standard_normal((7, 3, 4))
    layer = bnp.BatchNorm(3, track_running_stats=False, dtype="float64").eval()
    assert layer.running_mean is None and layer.num_batches_tracked is None
    ref = torch.nn.BatchNorm1d(3, track_running_stats=False, dtype=torch.float64).eval()
    assert_close(layer(x), ref(torch.tensor(x)).detach().numpy(), "float64")


def test_affine_false_layer_has_no_parameters(rng):
    layer = bnp.BatchNorm(3, affine=False)
    y = layer(rng.standard_normal((5, 3)).astype(np.float32))
    layer.backward(np.ones_like(y))
    assert layer.parameters() == {} and layer.grads == {}


def test_float16_inputs_keep_float32_state_and_float16_outputs(torch, rng):
    x = (rng.standard_normal((32, 4, 5)) * 3 + 100).astype(np.float16)
    layer = bnp.BatchNorm(4)
    y = layer(x)
    dx = layer.backward(np.ones_like(x))
    assert y.dtype == dx.dtype == np.float16
    assert layer.running_mean.dtype == layer.running_var.dtype == np.float32
    ref = torch.nn.BatchNorm1d(4)
    ty = ref(torch.tensor(x.astype(np.float32)))             # same values, float32 math
    assert_close(y, ty.detach().numpy(), "float16", what="y")
    assert_close(layer.running_mean, ref.running_mean.numpy(), "float32", what="running_mean")
    assert_close(layer.running_var, ref.running_var.numpy(), "float32", what="running_var")
    with pytest.raises(ValueError, match="float32 or float64"):
        bnp.BatchNorm(4, dtype="float16")


@pytest.mark.parametrize("shape", [(4096, 256), (16, 32, 40, 40)])
def test_results_do_not_depend_on_the_thread_count(rng, shape):
    """Tiles are reduced independently and merged in a fixed order: 1 and 2 threads give
    bitwise-identical results (so notebooks print the same digits everywhere)."""
    x, gamma, beta, dy = _inputs(rng, shape, "float32")
    assert x.nbytes >= numpy_tiles.THREAD_MIN_BYTES          # large enough to be threaded
    before = bnp.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            bnp.set_num_threads(n)
            y, cache = bnp.batch_norm_forward(x, gamma, beta)
            results.append((y, *bnp.batch_norm_backward(dy, cache), cache.mean, cache.var))
    finally:
        bnp.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
