"""What every array backend must pass — NumPy always, CuPy where CuPy sees a CUDA GPU (marked
``gpu``; skipped with the reason "CuPy/CUDA not available" elsewhere): training forward and
backward against the float64 staged reference, the layer's running statistics against
their float64 definition and the NumPy layer, every alternative against NumPy, and the
adversarial inputs of bncourse.course.accuracy.  The fused GPU kernels against the generic path:
tests/test_cupy_kernels.py (on the GPU, and on a CPU emulation of it)."""

from conftest import assert_close
import numpy as np
import pytest

from bncourse import functional
from bncourse.core import closed_form
from bncourse.course import accuracy, reference
import bncourse.cupy as bcp
from bncourse.kernels import cuda
import bncourse.numpy as bnp


class Backend:
    """A backend module with ``put`` (NumPy → its arrays) and ``get`` (→ NumPy)."""

    def __init__(self, name):
        self.name = name
        if name == "numpy":
            self.bn, self._put, self._get = bnp, np.asarray, np.asarray
        else:
            import cupy
            self.bn, self._put, self._get = bcp, cupy.asarray, cupy.asnumpy

    def put(self, *arrays):
        out = [None if a is None else self._put(a) for a in arrays]
        return out[0] if len(out) == 1 else out

    def get(self, a):
        return None if a is None else self._get(a)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not bcp.is_available(), reason="CuPy/CUDA not available")])])
def backend(request):
    return Backend(request.param)


def _inputs(rng, shape, dtype, affine=True):
    C = shape[1]
    view = (1, C) + (1,) * (len(shape) - 2)
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape(view)
         + rng.uniform(-5, 5, C).reshape(view)).astype(dtype)
    pdt = "float32" if dtype == "float16" else dtype
    gamma = rng.uniform(0.5, 2.0, C).astype(pdt) if affine else None
    beta = rng.standard_normal(C).astype(pdt) if affine else None
    return x, gamma, beta, rng.standard_normal(shape).astype(dtype)


def _f64(a):
    return None if a is None else a.astype(np.float64)


# ----------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("shape", [(8, 5), (3, 4, 7), (4, 3, 5, 6), (2, 3, 4, 5, 3), (256, 64),
                                   (2, 8, 33, 31)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("affine", [True, False])
def test_training_matches_float64_reference(backend, rng, shape, dtype, affine):
    x, gamma, beta, dy = _inputs(rng, shape, dtype, affine)
    y, cache = backend.bn.batch_norm_forward(*backend.put(x, gamma, beta))
    dx, dgamma, dbeta = backend.bn.batch_norm_backward(backend.put(dy), cache)
    ey, nodes = reference.forward(_f64(x), _f64(gamma), _f64(beta))
    edx, edgamma, edbeta, _ = reference.backward(_f64(dy), nodes)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    assert_close(backend.get(y), ey, dtype, what="y")
    assert_close(backend.get(dx), edx, dtype, what="dx")
    if affine:
        assert dgamma.dtype == gamma.dtype and dbeta.dtype == beta.dtype
        assert_close(backend.get(dgamma), edgamma, dtype, what="dgamma")
        assert_close(backend.get(dbeta), edbeta, dtype, what="dbeta")
    else:
        assert dgamma is None and dbeta is None
    assert_close(backend.get(cache.mean), nodes["mean"].reshape(-1), dtype, what="mean")
    assert_close(backend.get(cache.var), nodes["var"].reshape(-1), dtype, what="var")


def test_training_dispatches_to_the_fast_kernels(backend, rng):
    x = backend.put(_inputs(rng, (4, 3, 5), "float32")[0])
    kernels = functional.fast_kernels(x)
    assert kernels is not None and kernels.supports(x)
    if backend.name == "cupy":
        assert kernels is cuda
        assert isinstance(backend.bn.batch_norm_forward(x)[1], cuda.FusedCache)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inference_matches_its_definition(backend, rng, dtype):
    x, gamma, beta, _ = _inputs(rng, (5, 4, 6), dtype)
    rm, rv = rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2, 4).astype(dtype)
    y = backend.bn.batch_norm_inference(*backend.put(x, rm, rv, gamma, beta), eps=1e-3)
    view = (1, 4, 1)
    expected = ((_f64(x) - _f64(rm).reshape(view)) / np.sqrt(_f64(rv).reshape(view) + 1e-3)
                * _f64(gamma).reshape(view) + _f64(beta).reshape(view))
    assert_close(backend.get(y), expected, dtype, what="y")


@pytest.mark.parametrize("shape", [(16, 5), (8, 5, 7), (4, 5, 6, 3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_layer_running_statistics(backend, rng, shape, dtype, momentum):
    """running ← (1 − f)·running + f·batch statistic (unbiased variance), f = momentum or
    1/num_batches_tracked; checked against that definition in float64 and the NumPy layer."""
    C = shape[1]
    axes = closed_form.batch_axes(len(shape))
    layer = backend.bn.BatchNorm(C, momentum=momentum, dtype=dtype)
    ref = bnp.BatchNorm(C, momentum=momentum, dtype=dtype)
    mean, var = np.zeros(C), np.ones(C)
    for step in range(4):
        x, _, _, dy = _inputs(rng, shape, dtype)
        x = x + step
        y, ry = layer(backend.put(x)), ref(x)
        dx, rdx = layer.backward(backend.put(dy)), ref.backward(dy)
        f = momentum if momentum is not None else 1.0 / (step + 1)
        mean = (1 - f) * mean + f * _f64(x).mean(axis=axes)
        var = (1 - f) * var + f * _f64(x).var(axis=axes, ddof=1)
        assert_close(backend.get(layer.running_mean), mean, dtype, what="running_mean")
        assert_close(backend.get(layer.running_var), var, dtype, what="running_var")
        assert_close(backend.get(layer.running_mean), ref.running_mean, dtype)
        assert_close(backend.get(layer.running_var), ref.running_var, dtype)
        assert_close(backend.get(y), ry, dtype, what="y")
        assert_close(backend.get(dx), rdx, dtype, what="dx")
        for name in ("gamma", "beta"):
            assert_close(backend.get(layer.grads[name]), ref.grads[name], dtype, what=name)
    assert layer.num_batches_tracked == 4
    x = _inputs(rng, shape, dtype)[0]
    assert_close(backend.get(layer.eval()(backend.put(x))), ref.eval()(x), dtype, what="eval y")
    assert layer.running_mean.dtype == np.dtype(dtype)


# ----------------------------------------------------------------------------- alternatives


def _layer_norm(bn, x, w, b, _):
    return bn.layer_norm_forward(x, x.shape[-1], w, b), bn.layer_norm_backward


def _rms_norm(bn, x, w, b, _):
    return bn.rms_norm_forward(x, x.shape[-1], w), bn.rms_norm_backward


def _instance_norm(bn, x, _w, _b, c):
    return bn.instance_norm_forward(x, *c), bn.instance_norm_backward


def _group_norm(bn, x, _w, _b, c):
    return bn.group_norm_forward(x, 3, *c), bn.group_norm_backward


def _batch_renorm(bn, x, _w, _b, c):
    g, b = c
    y, cache, _ = bn.batch_renorm_forward(x, g, b, 0.5 * b, 1.5 + 0 * g, r_max=1.5, d_max=0.5)
    return (y, cache), bn.batch_renorm_backward


@pytest.mark.parametrize("alternative", [_layer_norm, _rms_norm, _instance_norm, _group_norm,
                                         _batch_renorm])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_alternatives_match_numpy(backend, rng, alternative, dtype):
    x = (rng.standard_normal((4, 6, 5)) * 2 + 1).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    last = [rng.uniform(0.5, 2, 5).astype(dtype), rng.standard_normal(5).astype(dtype)]
    chan = [rng.uniform(0.5, 2, 6).astype(dtype), rng.standard_normal(6).astype(dtype)]

    def run(bn, put):
        (y, cache), backward = alternative(bn, put(x), *map(put, last), [put(a) for a in chan])
        return (y, *backward(put(dy), cache))

    ours = run(backend.bn, backend.put)
    expected = run(bnp, np.asarray)
    assert len(ours) == len(expected)
    for a, e in zip(ours, expected):
        assert (a is None) == (e is None)
        if a is not None:
            assert a.dtype == e.dtype
            assert_close(backend.get(a), e, dtype)


# ----------------------------------------------------------------------------- adversarial inputs

LONG = [name for name in accuracy.CASES if "1e7" in name]


@pytest.mark.parametrize("name", [n for n in accuracy.CASES if n not in LONG] + LONG)
def test_adversarial_inputs_stay_exact(backend, name):
    """Huge means, constant channels, float16 near its top, 10^7 values per channel, sorted
    data: outputs and input gradients against float64 two-pass references on the same
    values (bncourse.course.accuracy), to issue #2's bounds."""
    x = accuracy.make_case(name)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype)
    y, cache = backend.bn.batch_norm_forward(backend.put(x))
    dx = backend.bn.batch_norm_backward(backend.put(dy), cache)[0]
    ey, edx = accuracy.exact(x, dy)
    bound = accuracy.Y_BOUND[x.dtype.name]
    assert accuracy.max_error(backend.get(y), ey) <= bound
    assert accuracy.max_error(backend.get(dx), edx, relative=True) <= bound
