"""The fused CUDA kernels of bncourse.kernels.cuda, checked without a GPU: the source
compiles (NVRTC through CuPy's compiler, and nvcc, where present), the launch plans are
sound, and the kernels — run on the CPU by tests/cuda_emulator.py, through the module's own
Python code — match the float64 generic path and stay exact on the adversarial inputs of
bncourse.course.accuracy.  Where CuPy sees a GPU, the same tests also run on it (``[cuda]``,
marked ``gpu``; skipped with the reason "CuPy/CUDA not available" elsewhere)."""

import contextlib
import shutil
import subprocess

from conftest import assert_close
from cuda_emulator import ORDERS, Emulator, compiler
import numpy as np
import pytest

from bncourse import functional
from bncourse.core import closed_form
from bncourse.course import accuracy
import bncourse.cupy as bcp
from bncourse.kernels import cuda as K
import bncourse.numpy as bnp

SMS = 4          # multiprocessors of the emulated GPU: 32 blocks, so channels span blocks
GPU = [pytest.mark.gpu, pytest.mark.skipif(not bcp.is_available(), reason="CuPy/CUDA not available")]


# ----------------------------------------------------------------------------- compilation


@pytest.mark.parametrize("dtype", list(K.TYPES))
def test_source_compiles_with_nvrtc(dtype, tmp_path):
    """CuPy compiles RawModules with NVRTC; without a GPU its arch lookup fails, so call
    its compiler class with explicit architectures (Turing, Ampere, Hopper)."""
    compiler_ = pytest.importorskip("cupy.cuda.compiler", reason="CuPy is not installed")
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC library not found: {exc}")
    for arch in ("75", "80", "90"):
        program = compiler_._NVRTCProgram(K.source(dtype), "", (), (), name_expressions=None,
                                          method="ptx")
        ptx, _ = program.compile((f"-arch=compute_{arch}", "--device-as-default-execution-space"))
        for name in K.KERNEL_NAMES:
            assert f".entry {name}(" in ptx.decode()


@pytest.mark.parametrize("dtype", list(K.TYPES))
def test_source_compiles_with_nvcc_without_warnings(dtype, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    src = tmp_path / f"bncourse_{dtype}.cu"
    src.write_text(K.source(dtype))
    out = subprocess.run([nvcc, "-arch=sm_80", "-cubin", "-Werror", "all-warnings", "-o",
                          str(tmp_path / "k.cubin"), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_kernel_names_are_prefixed_and_complete(emulator):
    assert set(emulator.signatures) == set(K.KERNEL_NAMES)
    assert all(n.startswith("bncourse_") for n in K.KERNEL_NAMES)


def test_emulator_rejects_what_cuda_would_misread(emulator):
    """A Python int for an ``int`` parameter, a wrong array dtype or block size: CuPy would
    pass them (as int64, as raw bytes) and the kernel would read garbage."""
    x = np.zeros((4, 3), np.float32)
    coef = np.zeros((3, 3), np.float32)
    good = (x, x.copy(), coef, np.int32(3), np.int64(1), np.int64(12))
    emulator.launch("bncourse_forward_normalize", "float32", (1,), (K.BLOCK,), good)
    bad = [good[:3] + (3,) + good[4:],                              # Python int for int
           good[:3] + (np.int64(3),) + good[4:],                    # int64 for int
           good[:2] + (coef.astype(np.float64),) + good[3:]]        # A* must be float32
    for args in bad:
        with pytest.raises(AssertionError):
            emulator.launch("bncourse_forward_normalize", "float32", (1,), (K.BLOCK,), args)
    with pytest.raises(AssertionError):
        emulator.launch("bncourse_forward_normalize", "float32", (1,), (128,), good)


# ----------------------------------------------------------------------------- launch plans


@pytest.mark.parametrize("shape", [(32, 64, 112, 112), (256, 256, 14, 14), (65536, 1024),
                                   (8, 5), (3, 4, 7), (2, 48), (10_000_000, 1), (1, 3, 2),
                                   (2, 70000), (10, 1, 1000, 1000)])
@pytest.mark.parametrize("sms", [1, 4, 132])
def test_plans_cover_every_value_once_within_cuda_limits(shape, sms):
    p = K.make_plan(shape, sms)
    m = p.count
    assert 1 <= p.S <= 65535 and (p.S - 1) * p.chunk < m <= p.S * p.chunk   # no empty block
    assert p.CW & (p.CW - 1) == 0 and p.CW <= 32 and (p.CW == 1 or p.L == 1)
    assert (p.tiles - 1) * p.CW < p.C <= p.tiles * p.CW
    assert 1 <= p.grid < 2**31 and p.tiles < 2**31


def test_plan_keeps_every_multiprocessor_busy():
    """At least one full wave of reduction blocks (4 blocks of 256 threads per SM fit at
    the ≤ 64 registers ptxas reports), and a full wave of elementwise blocks."""
    for shape in [(32, 64, 112, 112), (256, 256, 14, 14), (65536, 1024)]:
        p = K.make_plan(shape, 132)
        assert p.tiles * p.S >= 132 * 4
        assert p.grid == 132 * K.BLOCKS_PER_SM


# ----------------------------------------------------------------------------- the kernels run


@pytest.fixture(scope="session")
def emulator(request, tmp_path_factory):
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the CUDA emulator")
    cache = getattr(request.config, "cache", None)
    build = cache.mkdir("cuda_emulator") if cache is not None else tmp_path_factory.mktemp("emu")
    return Emulator(str(build))


class Runner:
    """cuda.forward/backward with NumPy data in and out: ``device`` moves an input
    to where the kernels run, ``host`` brings a result back."""

    def __init__(self, device, host, emulator=None):
        self.device_array, self.host_array, self.emulator = device, host, emulator

    def device(self, a):
        return None if a is None else self.device_array(a)

    def host(self, a):
        return None if a is None else self.host_array(a)

    def forward(self, x, gamma=None, beta=None, eps=1e-5):
        return K.forward(self.device(x), self.device(gamma), self.device(beta), eps)

    def backward(self, dy, cache):
        return K.backward(self.device(dy), cache)


@pytest.fixture(params=["emulated", pytest.param("cuda", marks=GPU)])
def fused(request, monkeypatch):
    """The fused kernels on the CPU emulator (NumPy arrays), or on the GPU (CuPy arrays)."""
    if request.param == "cuda":
        import cupy
        device = lambda a: a if isinstance(a, cupy.ndarray) else cupy.asarray(a)
        return Runner(device, cupy.asnumpy)
    emulator = request.getfixturevalue("emulator")
    monkeypatch.setattr(K, "cp", np)
    monkeypatch.setattr(K, "_launch", emulator.launch)
    monkeypatch.setattr(K, "_device", lambda x: contextlib.nullcontext())
    monkeypatch.setattr(K, "_sm_count", lambda x: SMS)
    emulator.order = ORDERS["forward"]
    emulator.launches.clear()
    return Runner(np.asarray, np.asarray, emulator)


def _inputs(rng, shape, dtype, affine=True, param_dtype=None):
    C = shape[1]
    view = (1, C) + (1,) * (len(shape) - 2)
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape(view)
         + rng.uniform(-5, 5, C).reshape(view)).astype(dtype)
    pdt = param_dtype or ("float32" if dtype == "float16" else dtype)
    gamma = rng.uniform(0.5, 2.0, C).astype(pdt) if affine else None
    beta = rng.standard_normal(C).astype(pdt) if affine else None
    return x, gamma, beta, rng.standard_normal(shape).astype(dtype)


def _check_against_generic(fused, x, gamma, beta, dy):
    """Fused forward/backward of (device) inputs against the float64 generic path."""
    y, cache = fused.forward(x, gamma, beta)
    dx, dg, db = fused.backward(dy, cache)
    x, gamma, beta, dy = map(fused.host, (x, gamma, beta, dy))
    gy, gcache = closed_form.batch_norm_forward(x, gamma, beta, 1e-5)
    gdx, gdg, gdb = closed_form.norm_backward(dy, gcache)
    dtype = x.dtype.name
    for a, e, name in [(y, gy, "y"), (dx, gdx, "dx"), (dg, gdg, "dgamma"), (db, gdb, "dbeta")]:
        assert (a is None) == (e is None), name
        if a is not None:
            a = fused.host(a)
            assert a.dtype == e.dtype and a.shape == e.shape, name
            assert_close(a, e, dtype, what=name)
    unit = 1e-13 if dtype == "float64" else 1e-6     # a few roundings of the deviations
    sigma = np.sqrt(gcache.var)
    assert np.all(np.abs(fused.host(cache.mean) - gcache.mean) <= unit * sigma)
    assert np.all(np.abs(fused.host(cache.var) - gcache.var) <= unit * gcache.var)
    assert cache.count == gcache.count and cache.shape == x.shape and cache.dtype == x.dtype


SHAPES = [(8, 5), (3, 4, 7), (4, 3, 5, 6), (2, 3, 4, 5, 3), (256, 64), (300, 48),
          (2, 8, 131, 129), (4096, 3), (2, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("affine", [True, False])
def test_fused_matches_generic(fused, rng, shape, dtype, affine):
    _check_against_generic(fused, *_inputs(rng, shape, dtype, affine))


@pytest.mark.parametrize("shape", [(2, 8, 131, 129), (4096, 40)])
def test_results_do_not_depend_on_which_block_finishes_last(fused, rng, shape):
    """The last block of a channel merges every block's sums in a fixed order, so results
    are bitwise reproducible: emulated with the blocks run in three orders, on a GPU as the
    hardware schedules them."""
    x, gamma, beta, dy = _inputs(rng, shape, "float32")
    runs = []
    for order in ORDERS.values():
        if fused.emulator is not None:
            fused.emulator.order = order
        y, cache = fused.forward(x, gamma, beta)
        runs.append([fused.host(a) for a in (y, cache.stats, *fused.backward(dy, cache))])
    if fused.emulator is not None:
        assert dict(fused.emulator.launches)["bncourse_forward_stats"][1] > 1   # S > 1
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("param_dtype", ["float16", "float32", "float64"])
def test_parameter_dtypes(fused, rng, param_dtype):
    x, gamma, beta, dy = _inputs(rng, (64, 6, 5), "float32", param_dtype=param_dtype)
    y, cache = fused.forward(x, gamma, beta)
    _, dg, db = fused.backward(dy, cache)
    assert dg.dtype == db.dtype == np.dtype(param_dtype)
    gy, gcache = closed_form.batch_norm_forward(x, gamma, beta, 1e-5)
    _, gdg, gdb = closed_form.norm_backward(dy, gcache)
    grad_dtype = "float16" if param_dtype == "float16" else "float32"
    assert_close(fused.host(y), gy, "float32")
    assert_close(fused.host(dg), gdg, grad_dtype)
    assert_close(fused.host(db), gdb, grad_dtype)


def test_non_contiguous_input_and_gradient(fused, rng):
    base, gamma, beta, base_dy = _inputs(rng, (6, 3, 8, 7), "float64")
    x = fused.device(base).swapaxes(2, 3)[::2]
    dy = fused.device(base_dy).swapaxes(2, 3)[1::2]
    assert not x.flags.c_contiguous and not dy.flags.c_contiguous
    _check_against_generic(fused, x, gamma, beta, dy)


@pytest.mark.parametrize("name", list(accuracy.CASES))
def test_adversarial_inputs_stay_exact(fused, name):
    """The cases of bncourse.course.accuracy (huge means, constant channels, float16 near its top,
    10^7 values per channel, sorted data) against float64 two-pass references."""
    x = accuracy.make_case(name)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype)
    y, cache = fused.forward(x)
    dx, _, _ = fused.backward(dy, cache)
    ey, edx = accuracy.exact(x, dy)
    bound = accuracy.Y_BOUND[x.dtype.name]
    assert accuracy.max_error(fused.host(y), ey) <= bound
    assert accuracy.max_error(fused.host(dx), edx, relative=True) <= bound


@pytest.mark.parametrize("shape", [(16, 2, 64, 64), (65536, 4)])
def test_an_unlucky_reference_is_recentred(fused, rng, shape):
    """Outliers exactly where the reference r is sampled: κ = B/M2 ≈ 1000 for channel 1,
    so its last block sums the channel again around r = μ; channel 0 is left alone."""
    x = 1e4 + rng.standard_normal(shape)
    N, L = shape[0], int(np.prod(shape[2:]))
    j = np.arange(K.SAMPLE) * (N * L) // K.SAMPLE           # the sampled values of a channel
    x.reshape(N, shape[1], L)[j // L, 1, j % L] += 50.0
    x = x.astype(np.float32)
    y, cache = fused.forward(x)
    mean, sigma = fused.host(cache.mean), np.sqrt(fused.host(cache.var))
    r = fused.host(cache.coef)[0].astype(np.float64)
    assert abs(r[1] - mean[1]) < 1e-3 * sigma[1]            # recentred: r = μ (rounded)
    assert abs(r[0] - mean[0]) > 1e-3 * sigma[0]            # not needed: still the sample's
    ey, _ = accuracy.exact(x)
    assert accuracy.max_error(fused.host(y), ey) <= accuracy.Y_BOUND["float32"]


@pytest.mark.parametrize("shape", [(16, 5), (4, 5, 6, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_layer_runs_unchanged_on_the_fused_cache(fused, monkeypatch, rng, shape, momentum):
    """BatchNorm reads mean, var, count from the cache and calls cache.backward: a NumPy
    layer whose forward runs the (emulated) fused kernels matches the NumPy layer step by
    step.  (On a GPU, test_backends.py checks bncourse.cupy.BatchNorm itself.)"""
    if fused.emulator is None:
        pytest.skip("emulator only: the layer is bncourse.numpy's")
    C = shape[1]
    ours, ref = bnp.BatchNorm(C, momentum=momentum), bnp.BatchNorm(C, momentum=momentum)
    for step in range(3):
        x, _, _, dy = _inputs(rng, shape, "float32")
        x = x + step
        with monkeypatch.context() as m:
            m.setattr(functional, "fast_kernels", lambda a: K)
            y = ours(x)
            assert isinstance(ours._cache, K.FusedCache)
            dx = ours.backward(dy)
        assert_close(y, ref(x), "float32", what="y")
        assert_close(dx, ref.backward(dy), "float32", what="dx")
        for name in ("gamma", "beta"):
            assert_close(ours.grads[name], ref.grads[name], "float32", what=name)
        for name in ("running_mean", "running_var"):
            assert_close(getattr(ours, name), getattr(ref, name), "float32", what=name)
    assert ours.num_batches_tracked == ref.num_batches_tracked == 3
