"""bncourse.torch.batch_norm / BatchNormFunction against torch.nn.functional.batch_norm:
values, gradients, running statistics, autograd checks, layouts and errors."""

import subprocess
import sys

from conftest import assert_close, optional
from hypothesis import given
from hypothesis import strategies as st
import pytest

torch = optional("torch")
import torch.nn.functional as F  # noqa: E402

import bncourse.torch as bt  # noqa: E402

SHAPES = [(8, 5), (3, 4, 7), (4, 3, 5, 6), (2, 3, 4, 5, 3), (512, 32), (4, 8, 33, 31)]
DTYPES = [torch.float64, torch.float32]


def name(dtype):
    return str(dtype).rsplit(".", 1)[-1]


def make(shape, dtype, affine=True, seed=0):
    """x with per-channel means and scales, parameters, upstream gradient (float64 values
    rounded to ``dtype``)."""
    g = torch.Generator().manual_seed(seed)
    C = shape[1]
    view = (1, C) + (1,) * (len(shape) - 2)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * (torch.rand(C, generator=g, dtype=torch.float64) * 3 + 0.5).view(view)
         + (torch.rand(C, generator=g, dtype=torch.float64) * 10 - 5).view(view)).to(dtype)
    w = (torch.rand(C, generator=g, dtype=torch.float64) * 1.5 + 0.5).to(dtype) if affine else None
    b = torch.randn(C, generator=g, dtype=torch.float64).to(dtype) if affine else None
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, w, b, dy


def run(fn, x, w, b, dy, running=None, training=True, momentum=0.1, eps=1e-5):
    """Forward and gradients of ``fn`` (ours or torch's) on fresh leaf copies."""
    leaves = [None if t is None else t.clone().requires_grad_() for t in (x, w, b)]
    rm, rv = (None, None) if running is None else running
    y = fn(leaves[0], rm, rv, leaves[1], leaves[2], training, momentum, eps)
    y.backward(dy)
    return [y.detach()] + [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=name)
@pytest.mark.parametrize("affine", [True, False])
def test_training_matches_torch(shape, dtype, affine):
    x, w, b, dy = make(shape, dtype, affine)
    C = shape[1]
    ours_running = (torch.randn(C, dtype=dtype), torch.rand(C, dtype=dtype) + 0.5)
    theirs_running = tuple(t.clone() for t in ours_running)
    ours = run(bt.batch_norm, x, w, b, dy, ours_running, momentum=0.3)
    theirs = run(F.batch_norm, x, w, b, dy, theirs_running, momentum=0.3)
    for a, e, what in zip(ours, theirs, ["y", "dx", "dweight", "dbias"]):
        if e is None:
            assert a is None, what
            continue
        assert a.dtype == e.dtype, what
        assert_close(a.numpy(), e.numpy(), name(dtype), what=what)
    for a, e, what in zip(ours_running, theirs_running, ["running_mean", "running_var"]):
        assert_close(a.numpy(), e.numpy(), name(dtype), what=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=name)
def test_eval_matches_torch(dtype):
    x, w, b, dy = make((6, 4, 5, 3), dtype)
    running = (torch.randn(4, dtype=dtype), torch.rand(4, dtype=dtype) + 0.5)
    before = [t.clone() for t in running]
    ours = run(bt.batch_norm, x, w, b, dy, running, training=False, eps=1e-3)
    theirs = run(F.batch_norm, x, w, b, dy, running, training=False, eps=1e-3)
    for a, e, what in zip(ours, theirs, ["y", "dx", "dweight", "dbias"]):
        assert_close(a.numpy(), e.numpy(), name(dtype), what=what)
    assert all(torch.equal(a, e) for a, e in zip(running, before))   # eval never updates


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=name)
def test_half_inputs_compute_in_float32(half):
    x, w, b, dy = make((64, 6, 5), torch.float32)
    x, dy = (x * 3 + 100).to(half), dy.to(half)
    running = (torch.zeros(6), torch.ones(6))
    ref_running = (torch.zeros(6), torch.ones(6))
    y, dx, dw, db = run(bt.batch_norm, x, w, b, dy, running)
    # the same values through torch in float32: ours should be that, rounded once
    ty, tdx, tdw, tdb = run(F.batch_norm, x.float(), w, b, dy.float(), ref_running)
    assert y.dtype == dx.dtype == half and dw.dtype == torch.float32
    rtol = 2e-3 if half == torch.float16 else 1.6e-2         # one ulp of |y| ~ 4
    assert_close(y.float().numpy(), ty.numpy(), rtol=rtol, what="y")
    assert_close(dx.float().numpy(), tdx.numpy(), rtol=rtol, what="dx")
    assert_close(dw.numpy(), tdw.numpy(), "float32", what="dweight")
    assert_close(db.numpy(), tdb.numpy(), "float32", what="dbias")
    for a, e in zip(running, ref_running):
        assert a.dtype == torch.float32
        assert_close(a.numpy(), e.numpy(), "float32", what="running stats")


def test_running_var_is_unbiased_and_momentum_weights_the_new_value():
    x = torch.randn(10, 3, dtype=torch.float64)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    bt.batch_norm(x, rm, rv, training=True, momentum=0.25)
    torch.testing.assert_close(rm, 0.25 * x.mean(0), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(rv, 0.75 + 0.25 * x.var(0, unbiased=True), rtol=1e-14, atol=0)


def test_running_stats_are_updated_in_place_without_autograd():
    rm, rv = torch.zeros(3), torch.ones(3)
    ids = (rm.data_ptr(), rv.data_ptr())
    x = torch.randn(5, 3, requires_grad=True)
    bt.batch_norm(x, rm, rv, training=True).sum().backward()
    assert (rm.data_ptr(), rv.data_ptr()) == ids
    assert not rm.requires_grad and rm.grad_fn is None and not torch.equal(rm, torch.zeros(3))


# ----------------------------------------------------------------------------- autograd


def _f64(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_and_gradgradcheck(shape, training):
    C = shape[1]
    x = _f64(*shape)
    w, b = (torch.rand(C, dtype=torch.float64) + 0.5).requires_grad_(), _f64(C)
    rm, rv = torch.randn(C, dtype=torch.float64), torch.rand(C, dtype=torch.float64) + 0.5
    # momentum 0: the running statistics stay put while gradcheck calls the forward
    f = lambda x, w, b: bt.batch_norm(x, rm, rv, w, b, training, 0.0)
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))
    g = lambda x: bt.batch_norm(x, rm, rv, None, None, training, 0.0)
    assert torch.autograd.gradcheck(g, (x,)) and torch.autograd.gradgradcheck(g, (x,))


def test_double_backward_matches_torch():
    x, w, b, _ = make((6, 3, 4), torch.float64)
    grads = []
    for fn in (bt.batch_norm, F.batch_norm):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fn(xs, None, None, ws, b, True)
        (gx,) = torch.autograd.grad((y ** 3).sum(), xs, create_graph=True)
        grads.append(torch.autograd.grad((gx ** 2).sum(), (xs, ws)))
    for a, e in zip(*grads):
        assert_close(a.numpy(), e.numpy(), "float64")


@pytest.mark.parametrize("which", ["input", "weight", "bias"])
def test_needs_input_grad_is_respected(which):
    x, w, b, dy = make((5, 3), torch.float64)
    leaves = {"input": x, "weight": w, "bias": b}
    leaves[which] = leaves[which].clone().requires_grad_()
    y = bt.batch_norm(leaves["input"], None, None, leaves["weight"], leaves["bias"], True)
    (g,) = torch.autograd.grad(y, leaves[which], dy)
    expected = run(F.batch_norm, x, w, b, dy)[1 + ["input", "weight", "bias"].index(which)]
    assert_close(g.numpy(), expected.numpy(), "float64")


@given(st.integers(0, 2**31 - 1), st.sampled_from([(7, 3), (3, 2, 5), (2, 2, 3, 3)]))
def test_gradient_properties(seed, shape):
    """Σ dx = 0 and Σ dx·x̂ = 0 per channel (exactly so as ε → 0); y is invariant to
    x → a·x + c (a > 0)."""
    x, w, b, dy = make(shape, torch.float64, seed=seed)
    dims = (0,) + tuple(range(2, len(shape)))
    _, dx, _, _ = run(bt.batch_norm, x, w, b, dy, eps=1e-30)
    xhat = (x - x.mean(dims, keepdim=True)) / x.std(dims, correction=0, keepdim=True)
    scale = dy.abs().sum(dims) + 1
    assert torch.all(dx.sum(dims).abs() <= 1e-12 * scale)
    assert torch.all((dx * xhat).sum(dims).abs() <= 1e-12 * scale)
    view = (1, -1) + (1,) * (len(shape) - 2)
    a = torch.rand(shape[1], dtype=torch.float64).view(view) * 5 + 0.1
    y1 = bt.batch_norm(x, None, None, w, b, True, eps=1e-12)
    y2 = bt.batch_norm(a * x - 7.0, None, None, w, b, True, eps=1e-12)
    assert_close(y2.numpy(), y1.numpy(), rtol=1e-9)


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "strided"])
def test_non_contiguous_layouts(layout):
    x, w, b, dy = make((4, 3, 6, 5), torch.float64)
    if layout == "channels_last":
        x, dy = x.to(memory_format=torch.channels_last), dy.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        x, dy = x.transpose(2, 3), dy.transpose(2, 3)
    else:
        x, dy = x[:, :, ::2], dy[:, :, ::2]
    ours, theirs = run(bt.batch_norm, x, w, b, dy), run(F.batch_norm, x, w, b, dy)
    for a, e in zip(ours, theirs):
        assert_close(a.numpy(), e.contiguous().numpy(), "float64")
    if layout == "channels_last":
        assert ours[0].is_contiguous(memory_format=torch.channels_last)


def test_empty_batch_returns_empty_and_keeps_running_stats():
    rm, rv = torch.zeros(3), torch.ones(3)
    y = bt.batch_norm(torch.randn(0, 3, 4), rm, rv, training=True)
    assert y.shape == (0, 3, 4)
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


# ----------------------------------------------------------------------------- errors


def _call(fn, args, kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as exc:          # noqa: BLE001 - we compare what each raises
        return exc
    return None


X = torch.randn(4, 3)
ERRORS_LIKE_TORCH = {   # same message as torch.nn.functional.batch_norm
    "one value per channel": ((torch.randn(1, 3), None, None), dict(training=True)),
    "running_mean size": ((X, torch.zeros(4), torch.ones(4)), dict(training=True)),
    "running_var size": ((X, torch.zeros(3), torch.ones(4)), dict(training=True)),
    "weight size": ((X, None, None, torch.ones(4)), dict(training=True)),
    "bias size": ((X, None, None, None, torch.ones(2)), dict(training=True)),
    "eval without stats": ((X, None, None), dict(training=False)),
    "only one running stat": ((X, torch.zeros(3), None), dict(training=True)),
    "eps 0 in training": ((X, None, None), dict(training=True, eps=0.0)),
    "negative eps": ((X, torch.zeros(3), torch.ones(3)), dict(training=False, eps=-1.0)),
}


@pytest.mark.parametrize("case", ERRORS_LIKE_TORCH)
def test_errors_have_torchs_message(case):
    args, kwargs = ERRORS_LIKE_TORCH[case]
    ours, theirs = _call(bt.batch_norm, args, kwargs), _call(F.batch_norm, args, kwargs)
    assert ours is not None and theirs is not None
    assert str(ours) == str(theirs)
    assert isinstance(ours, ValueError)       # house rule; size errors are also RuntimeErrors
    assert isinstance(ours, type(theirs))


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((torch.randn(4),), {}, RuntimeError, r"expected at least 2D input \(got 1D input\)"),
    ((torch.zeros(4, 3, dtype=torch.long),), {}, TypeError, "floating-point dtype.*torch.int64"),
    (([[1.0, 2.0]],), {}, TypeError, "must be a torch.Tensor, got list"),
    ((X, torch.zeros(3), torch.ones(3)), dict(training=True, momentum=None), TypeError, "momentum=None"),
    ((X, torch.zeros(3), torch.ones(3)), dict(training=True, momentum=float("nan")), ValueError, "got nan"),
    ((X, None, None, torch.ones(3, dtype=torch.long)), dict(training=True), TypeError, "weight must have"),
])
def test_other_errors_name_the_value(args, kwargs, exc, match):
    args = args + (None,) * (3 - len(args))
    with pytest.raises(exc, match=match):
        bt.batch_norm(*args, **kwargs)


def test_a_failed_call_changes_no_state():
    rm, rv = torch.randn(3), torch.rand(3) + 1
    before = rm.clone(), rv.clone()
    for bad in [dict(weight=torch.ones(4)), dict(momentum=float("inf")), dict(eps=0.0)]:
        with pytest.raises(ValueError):
            bt.batch_norm(X, rm, rv, training=True, **bad)
    with pytest.raises(ValueError):
        bt.batch_norm(torch.randn(1, 3), rm, rv, training=True)
    assert torch.equal(rm, before[0]) and torch.equal(rv, before[1])


def test_importing_bncourse_does_not_import_torch():
    """``bncourse`` and ``bncourse.numpy`` need NumPy alone; ``bncourse.torch`` is opt-in."""
    code = "import sys, bncourse, bncourse.numpy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
