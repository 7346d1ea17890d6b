"""Edge cases of bncourse.torch against what torch.nn does on the same call, computed here
(never hardcoded): empty batches, memory formats of outputs and gradients, the errors and
the accepted/refused arguments (README, "Differences from torch.nn")."""

from conftest import assert_close, optional
import pytest

torch = optional("torch")
import torch.nn.functional as F  # noqa: E402

import bncourse.torch as bt  # noqa: E402

D = torch.float64


def outcome(fn):
    """(result, None) or (None, exception) of ``fn()``."""
    try:
        return fn(), None
    except Exception as exc:          # noqa: BLE001 - we compare what each raises
        return None, exc


# ----------------------------------------------------------------------------- empty batches


EMPTY = {
    "group_norm 2-D": (lambda m, x: m.group_norm(x, 1), (0, 2)),
    "group_norm 4-D affine": (lambda m, x: m.group_norm(x, 2, torch.ones(4, dtype=D), torch.zeros(4, dtype=D)), (0, 4, 2, 2)),
    "group_norm no space": (lambda m, x: m.group_norm(x, 2), (2, 4, 0)),
    "batch_norm 2-D": (lambda m, x: m.batch_norm(x, None, None, training=True), (0, 3)),
    "batch_norm 4-D eval": (lambda m, x: m.batch_norm(x, torch.zeros(3, dtype=D), torch.ones(3, dtype=D)), (0, 3, 2, 2)),
    "layer_norm": (lambda m, x: m.layer_norm(x, (4,)), (0, 4)),
    "instance_norm": (lambda m, x: m.instance_norm(x), (0, 4, 3)),
    "rms_norm": (lambda m, x: m.rms_norm(x, (4,)), (0, 4)),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_batches_as_torch(name):
    fn, shape = EMPTY[name]
    results = []
    for m in (F, bt):
        x = torch.randn(shape, dtype=D).requires_grad_()
        y = fn(m, x)
        y.backward(torch.ones_like(y))
        results.append((y, x.grad))
    (y, dx), (ey, edx) = results
    assert y.shape == ey.shape and y.dtype == ey.dtype
    assert dx.shape == edx.shape


def test_group_norm_module_on_an_empty_batch():
    x = torch.randn(0, 4, 2, 2)
    assert bt.GroupNorm(2, 4)(x).shape == torch.nn.GroupNorm(2, 4)(x).shape


def test_empty_batch_norm_keeps_its_input_and_running_stats():
    x = torch.randn(0, 3, 2)
    rm, rv = torch.zeros(3), torch.ones(3)
    y = bt.batch_norm(x, rm, rv, training=True)
    assert y.shape == x.shape and y is not x
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


# ----------------------------------------------------------------------------- memory formats


def _format(t):
    for fmt in (torch.contiguous_format, torch.channels_last, torch.channels_last_3d):
        if t.is_contiguous(memory_format=fmt):
            return str(fmt)
    return "strided"


def _modules(ndim):
    two = ndim == 4
    return {
        "BatchNorm": lambda T: (T.BatchNorm2d if two else T.BatchNorm3d)(4),
        "GroupNorm": lambda T: T.GroupNorm(2, 4),
        "InstanceNorm": lambda T: (T.InstanceNorm2d if two else T.InstanceNorm3d)(4, affine=True),
        "InstanceNorm-tracked": lambda T: (T.InstanceNorm2d if two else T.InstanceNorm3d)(
            4, affine=True, track_running_stats=True),
        "LayerNorm": lambda T: T.LayerNorm(5),
        "RMSNorm": lambda T: T.RMSNorm(5),
    }


@pytest.mark.parametrize("ndim, fmt", [(4, torch.channels_last), (5, torch.channels_last_3d)],
                         ids=["channels_last", "channels_last_3d"])
@pytest.mark.parametrize("module", list(_modules(4)))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_memory_format_of_outputs_and_gradients_as_torch_nn(ndim, fmt, module, training):
    """y and dx (torch.autograd.grad: no layout contract of .grad in between), for dy in the
    input's format and contiguous, against torch.nn's module on the same input."""
    shape = (2, 4, 3, 5) if ndim == 4 else (2, 4, 3, 2, 5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=D).contiguous(memory_format=fmt)
    dys = [torch.randn(shape, generator=g, dtype=D).contiguous(memory_format=fmt),
           torch.randn(shape, generator=g, dtype=D)]
    seen = []
    for T in (torch.nn, bt):
        m = _modules(ndim)[module](T).to(D).train(training)
        xi = x.clone(memory_format=torch.preserve_format).requires_grad_()
        y = m(xi)
        grads = [torch.autograd.grad(y, xi, dy, retain_graph=True)[0] for dy in dys]
        seen.append(([_format(y)] + [_format(d) for d in grads], y, grads))
    (ours_fmt, y, grads), (theirs_fmt, ey, egrads) = seen[1], seen[0]
    assert ours_fmt == theirs_fmt
    assert_close(y.detach(), ey.detach(), "float64")
    for a, e in zip(grads, egrads):
        assert_close(a, e, "float64")


# ----------------------------------------------------------------------------- errors and
# accepted arguments: torch's outcome computed here, ours must agree (class, and values)


def _same_outcome(call, *, values=True, message=False):
    """call(m) with m = F and m = bncourse.torch: both compute (equal, float64 normwise), or
    both raise, ours an instance of torch's class (and of ValueError/TypeError)."""
    seeded = lambda m: (torch.manual_seed(0), call(m))[1]       # the same draws for both
    (ey, eexc), (y, exc) = outcome(lambda: seeded(F)), outcome(lambda: seeded(bt))
    if eexc is not None:
        assert exc is not None, f"torch raises {eexc!r}, we computed"
        assert isinstance(exc, type(eexc)), f"{exc!r} is not a {type(eexc).__name__}"
        assert isinstance(exc, (ValueError, TypeError))
        if message:
            assert str(exc) == str(eexc)
        return None
    assert exc is None, f"torch computes, we raise {exc!r}"
    assert y.dtype == ey.dtype and y.shape == ey.shape
    if values:
        assert_close(y.double(), ey.double(), "float64")
    return y


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _pairing_calls():
    z = lambda c, d: torch.zeros(c, dtype=d)
    o = lambda c, d: torch.ones(c, dtype=d)
    return {
        "batch_norm weight": lambda m, xd, pd: m.batch_norm(torch.randn(4, 3, dtype=xd), None, None, o(3, pd), z(3, pd), True),
        "batch_norm running stats": lambda m, xd, pd: m.batch_norm(torch.randn(4, 3, dtype=xd), z(3, pd), o(3, pd), None, None, True),
        "batch_norm eval": lambda m, xd, pd: m.batch_norm(torch.randn(4, 3, dtype=xd), z(3, pd), o(3, pd), None, None, False),
        "layer_norm": lambda m, xd, pd: m.layer_norm(torch.randn(4, 3, dtype=xd), (3,), o(3, pd), z(3, pd)),
        "group_norm": lambda m, xd, pd: m.group_norm(torch.randn(4, 4, dtype=xd), 2, o(4, pd), z(4, pd)),
        "instance_norm weight": lambda m, xd, pd: m.instance_norm(torch.randn(4, 3, 5, dtype=xd), weight=o(3, pd), bias=z(3, pd)),
        "instance_norm running stats": lambda m, xd, pd: m.instance_norm(torch.randn(4, 3, 5, dtype=xd), z(3, pd), o(3, pd)),
        "rms_norm": lambda m, xd, pd: m.rms_norm(torch.randn(4, 3, dtype=xd), (3,), o(3, pd)),
    }


@pytest.mark.parametrize("case", list(_pairing_calls()))
@pytest.mark.parametrize("input_dtype", DTYPES, ids=str)
def test_dtype_pairings_are_those_torch_accepts(case, input_dtype):
    call = _pairing_calls()[case]
    for param_dtype in DTYPES:
        torch.manual_seed(0)
        (ey, eexc) = outcome(lambda: call(F, input_dtype, param_dtype))
        torch.manual_seed(0)
        (y, exc) = outcome(lambda: call(bt, input_dtype, param_dtype))
        assert (exc is None) == (eexc is None), (param_dtype, exc, eexc)
        if exc is None:
            assert y.dtype == ey.dtype
        else:
            assert isinstance(exc, RuntimeError) and isinstance(exc, TypeError)


@pytest.mark.parametrize("call", [
    lambda m: m.batch_norm(torch.ones(2, 3, dtype=torch.long), None, None, training=True),
    lambda m: m.layer_norm(torch.ones(2, 3, dtype=torch.long), (3,)),
    lambda m: m.group_norm(torch.ones(2, 4, dtype=torch.int32), 2),
    lambda m: m.instance_norm(torch.ones(2, 3, 4, dtype=torch.long)),
    lambda m: m.rms_norm(torch.ones(2, 3, dtype=torch.long), (3,)),
], ids=["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"])
def test_integer_input_raises_torchs_class(call):
    _same_outcome(call)
    with pytest.raises(NotImplementedError):
        call(bt)


X = torch.randn(6, 3, dtype=D) * 2 + 1


def _running(momentum):
    def call(m):
        rm, rv = torch.zeros(3, dtype=D), torch.ones(3, dtype=D)
        m.batch_norm(X, rm, rv, None, None, True, momentum)
        return torch.cat([rm, rv])
    return call


@pytest.mark.parametrize("name, call", [
    ("(1, C) running_mean", lambda m: m.batch_norm(X, torch.zeros(1, 3, dtype=D), torch.ones(3, dtype=D), training=True)),
    ("(1, C) running_var eval", lambda m: m.batch_norm(X, torch.zeros(3, dtype=D), torch.ones(1, 3, dtype=D))),
    ("(1, C) weight", lambda m: m.batch_norm(X, None, None, torch.rand(1, 3, dtype=D), training=True)),
    ("(C, 1) weight", lambda m: m.batch_norm(X, None, None, torch.rand(3, 1, dtype=D), training=True)),
    ("(1, C) instance running stats", lambda m: m.instance_norm(X.view(2, 3, 3), torch.zeros(1, 3, dtype=D), torch.ones(1, 3, dtype=D))),
    ("training=1", lambda m: m.batch_norm(X, None, None, training=1)),
    ("use_input_stats=1", lambda m: m.instance_norm(X.view(2, 3, 3), use_input_stats=1)),
    ("layer_norm(x, 3)", lambda m: m.layer_norm(X, 3)),
    ("layer_norm(x, [3])", lambda m: m.layer_norm(X, [3])),
    ("layer_norm(x, Size)", lambda m: m.layer_norm(X, torch.Size([3]))),
    ("rms_norm(x, 3)", lambda m: m.rms_norm(X, 3)),
    ("momentum 2", _running(2.0)),
    ("momentum -0.5", _running(-0.5)),
    ("momentum 1", _running(1)),
    ("instance momentum 1.5", lambda m: m.instance_norm(X.view(2, 3, 3), torch.zeros(3, dtype=D), torch.ones(3, dtype=D), momentum=1.5)),
    ("layer_norm eps < 0", lambda m: m.layer_norm(X, (3,), eps=-1e-3)),
    ("group_norm eps < 0", lambda m: m.group_norm(X, 1, eps=-1e-3)),
    ("rms_norm eps < 0", lambda m: m.rms_norm(X, (3,), eps=-1e-3)),
    ("instance_norm eps < 0", lambda m: m.instance_norm(X.view(2, 3, 3), eps=-1e-3)),
    ("batch_norm eps < 0 eval", lambda m: m.batch_norm(X, torch.zeros(3, dtype=D), torch.ones(3, dtype=D), eps=-1e-3)),
    ("batch_norm 6-D", lambda m: m.batch_norm(torch.randn(2, 3, 2, 2, 2, 2, dtype=D), None, None, training=True)),
    ("batch_norm 6-D eval", lambda m: m.batch_norm(torch.randn(2, 3, 2, 2, 2, 2, dtype=D), torch.zeros(3, dtype=D), torch.ones(3, dtype=D))),
    ("batch_norm 7-D", lambda m: m.batch_norm(torch.randn(2, 3, 2, 1, 2, 1, 2, dtype=D), None, None, training=True)),
    ("group_norm 6-D", lambda m: m.group_norm(torch.randn(2, 4, 2, 2, 2, 2, dtype=D), 2)),
    ("instance_norm 6-D", lambda m: m.instance_norm(torch.randn(2, 4, 2, 2, 2, 2, dtype=D))),
    ("group_norm 1-D", lambda m: m.group_norm(torch.randn(4, dtype=D), 2)),
    ("batch_norm 1-D empty", lambda m: m.batch_norm(torch.randn(0, dtype=D), None, None, training=True)),
    ("batch_norm 1-D empty eval", lambda m: m.batch_norm(torch.randn(0, dtype=D), torch.zeros(3, dtype=D), torch.ones(3, dtype=D))),
    ("group_norm N=2, one value per group", lambda m: m.group_norm(torch.rand(2, 10, 1, dtype=D), 10)),
    ("weight on another device", lambda m: m.batch_norm(X, None, None, torch.ones(3, device="meta"), training=True)),
    ("layer_norm weight on another device", lambda m: m.layer_norm(X, (3,), torch.ones(3, device="meta"))),
    ("group_norm bias on another device", lambda m: m.group_norm(X, 1, None, torch.ones(3, device="meta"))),
], ids=lambda v: v if isinstance(v, str) else "")
def test_accepted_and_refused_as_torch(name, call):
    _same_outcome(call)


@pytest.mark.parametrize("shape, groups", [((1, 10, 1), 10), ((1, 10), 10), ((1, 4, 1, 1), 4)])
def test_one_value_per_group_raises_torchs_error(shape, groups):
    x = torch.rand(shape)
    _same_outcome(lambda m: m.group_norm(x, groups), message=True)
    _same_outcome(lambda m: (torch.nn.GroupNorm if m is F else bt.GroupNorm)(groups, shape[1])(x),
                  message=True)


def test_batch_norm_1d_empty_batch_keeps_the_graph_and_running_stats():
    x = torch.randn(0, dtype=D).requires_grad_()
    rm, rv = torch.zeros(3), torch.ones(3)
    y = bt.batch_norm(x, rm, rv, training=True)
    y.sum().backward()
    assert y.shape == (0,) and x.grad.shape == (0,)
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


# ----------------------------------------------------------------------------- kept differences


@pytest.mark.parametrize("call", [
    lambda m: _running(float("nan"))(m),
    lambda m: _running(float("inf"))(m),
    lambda m: _running(True)(m),
    lambda m: m.layer_norm(X, (3,), eps=float("nan")),
    lambda m: m.group_norm(X, 1, eps=float("inf")),
], ids=["momentum nan", "momentum inf", "momentum True", "eps nan", "eps inf"])
def test_what_torch_computes_wrongly_in_silence_is_refused(call):
    """Kept differences (README): torch returns NaN (or uses True as 1.0) without a word."""
    call(F)
    with pytest.raises((ValueError, TypeError)):
        call(bt)


def test_empty_input_with_wrong_sizes_is_refused():
    """Kept difference (README): torch skips its checks on empty input."""
    x = torch.randn(0, 3)
    F.batch_norm(x, torch.zeros(5), torch.ones(5), training=True)
    with pytest.raises(RuntimeError, match="running_mean should contain 3 elements"):
        bt.batch_norm(x, torch.zeros(5), torch.ones(5), training=True)


def test_1d_empty_batch_ignores_a_zero_element_weight():
    """Kept difference (README): torch raises IndexError (it reads weight[0])."""
    x, w = torch.randn(0), torch.ones(0)
    with pytest.raises(IndexError):
        F.batch_norm(x, None, None, w, training=True)
    assert bt.batch_norm(x, None, None, w, training=True).shape == (0,)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_running_stats_that_require_grad_are_refused_as_torch(training):
    """torch: not differentiable with respect to running_mean (was a silent zero here)."""
    def call(m):
        rm = torch.zeros(3, dtype=D, requires_grad=True)
        return m.batch_norm(X, rm, torch.ones(3, dtype=D), training=training)
    _same_outcome(call, message=True)
    rv = torch.ones(3, dtype=D)
    for m in (F, bt):
        with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'running_mean'"):
            torch.func.grad(lambda a: m.batch_norm(X, a, rv, training=False).sum())(torch.zeros(3, dtype=D))
    with torch.no_grad():                      # no graph, no error (torch alike)
        _same_outcome(call)
