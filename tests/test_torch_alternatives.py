"""The alternatives in bncourse.torch against torch.nn.functional.{layer_norm, group_norm,
instance_norm, rms_norm} and torch.nn's modules; batch renorm against bncourse.numpy."""

from conftest import assert_close, optional
import numpy as np
import pytest

torch = optional("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bncourse.numpy as bnp  # noqa: E402
import bncourse.torch as bt  # noqa: E402

F64, F32 = torch.float64, torch.float32


def _rand(shape, dtype, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


# Each case: (ours, torch's) as functions of (x, w, b), input shape, parameter shape.
CASES = {
    "layer_norm": (lambda x, w, b: bt.layer_norm(x, (5, 3), w, b),
                   lambda x, w, b: F.layer_norm(x, (5, 3), w, b), (4, 6, 5, 3), (5, 3)),
    "layer_norm_2d": (lambda x, w, b: bt.layer_norm(x, (7,), w, b, eps=1e-3),
                      lambda x, w, b: F.layer_norm(x, (7,), w, b, eps=1e-3), (9, 7), (7,)),
    "rms_norm": (lambda x, w, b: bt.rms_norm(x, (5, 3), w),
                 lambda x, w, b: F.rms_norm(x, (5, 3), w), (4, 6, 5, 3), (5, 3)),
    "rms_norm_eps": (lambda x, w, b: bt.rms_norm(x, (3,), w, eps=1e-2),
                     lambda x, w, b: F.rms_norm(x, (3,), w, eps=1e-2), (4, 6, 3), (3,)),
    "group_norm": (lambda x, w, b: bt.group_norm(x, 3, w, b),
                   lambda x, w, b: F.group_norm(x, 3, w, b), (4, 6, 5, 3), (6,)),
    "group_norm_2d": (lambda x, w, b: bt.group_norm(x, 2, w, b),
                      lambda x, w, b: F.group_norm(x, 2, w, b), (5, 6), (6,)),
    "instance_norm": (lambda x, w, b: bt.instance_norm(x, weight=w, bias=b),
                      lambda x, w, b: F.instance_norm(x, weight=w, bias=b), (4, 6, 5, 3), (6,)),
    "instance_norm_3d": (lambda x, w, b: bt.instance_norm(x, weight=w, bias=b),
                         lambda x, w, b: F.instance_norm(x, weight=w, bias=b), (3, 2, 7), (2,)),
}


def _grads(fn, x, w, b, dy):
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = fn(*leaves)
    y.backward(dy)
    return [y.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [F64, F32], ids=str)
def test_matches_torch_functional(case, dtype):
    ours, theirs, shape, pshape = CASES[case]
    x, dy = _rand(shape, dtype, 0, 2.0, 3.0), _rand(shape, dtype, 1)
    w, b = _rand(pshape, dtype, 2, 0.5, 1.0), _rand(pshape, dtype, 3)
    a, e = _grads(ours, x, w, b, dy), _grads(theirs, x, w, b, dy)
    tol = "float64" if dtype == F64 else "float32"
    for got, want, what in zip(a, e, ["y", "dx", "dweight", "dbias"]):
        if want is None:                  # RMS norm has no bias
            assert got is None
            continue
        assert got.dtype == want.dtype
        assert_close(got.numpy(), want.numpy(), tol, what=what)


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_and_gradgradcheck(case):
    ours, _, shape, pshape = CASES[case]
    if case.startswith(("group", "instance")):          # gradgradcheck is O(numel²)
        small = (2,) + shape[1:2] + tuple(min(s, 2) for s in shape[2:])
    else:
        small = (2,) * (len(shape) - len(pshape)) + tuple(pshape)
    x = _rand(small, F64, 0).requires_grad_()
    w, b = _rand(pshape, F64, 1, 0.3, 1.0).requires_grad_(), _rand(pshape, F64, 2).requires_grad_()
    assert torch.autograd.gradcheck(ours, (x, w, b))
    assert torch.autograd.gradgradcheck(ours, (x, w, b))


def test_half_input_is_computed_in_float32():
    x = _rand((8, 64), torch.float16, 0, 1.0, 300.0)          # np.var overflows on this
    y = bt.layer_norm(x, (64,))
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert_close(y.float().numpy(), F.layer_norm(x.float(), (64,)).numpy(), rtol=2e-3)


# ----------------------------------------------------------------------------- modules


@pytest.mark.parametrize("ours_cls, torch_cls, args, kw, shape", [
    (bt.LayerNorm, nn.LayerNorm, ((5, 3),), {}, (4, 6, 5, 3)),
    (bt.LayerNorm, nn.LayerNorm, (3,), dict(bias=False), (4, 3)),
    (bt.RMSNorm, nn.RMSNorm, ((5, 3),), {}, (4, 6, 5, 3)),
    (bt.GroupNorm, nn.GroupNorm, (2, 6), {}, (4, 6, 5)),
    (bt.InstanceNorm1d, nn.InstanceNorm1d, (6,), {}, (4, 6, 5)),
    (bt.InstanceNorm1d, nn.InstanceNorm1d, (6,), {}, (6, 5)),          # unbatched
    (bt.InstanceNorm2d, nn.InstanceNorm2d, (6,), dict(affine=True, track_running_stats=True), (4, 6, 5, 3)),
    (bt.InstanceNorm3d, nn.InstanceNorm3d, (2,), dict(affine=True, track_running_stats=True, momentum=0.4), (2, 2, 3, 4, 2)),
])
def test_modules_match_torch(ours_cls, torch_cls, args, kw, shape):
    ours, theirs = ours_cls(*args, dtype=F64, **kw), torch_cls(*args, dtype=F64, **kw)
    assert isinstance(ours, torch_cls)
    assert repr(ours) == repr(theirs) and list(ours.state_dict()) == list(theirs.state_dict())
    with torch.no_grad():
        for p in ours.parameters():
            p.uniform_(0.5, 1.5)
    theirs.load_state_dict(ours.state_dict())
    for step in range(4):
        if step == 2:
            ours.eval(), theirs.eval()
        x, dy = _rand(shape, F64, step, 1 + step, step), _rand(shape, F64, 10 + step)
        a = _grads(lambda x, *_: ours(x), x, x, x, dy)[:2]
        e = _grads(lambda x, *_: theirs(x), x, x, x, dy)[:2]
        for got, want in zip(a + [p.grad for p in ours.parameters()] + list(ours.buffers()),
                             e + [p.grad for p in theirs.parameters()] + list(theirs.buffers())):
            assert_close(got.numpy(), want.numpy(), "float64", what=f"step {step}")
        ours.zero_grad(), theirs.zero_grad()


# ----------------------------------------------------------------------------- batch renorm


def test_batch_renorm_matches_the_numpy_transcription_of_the_paper():
    C, dtype = 4, "float64"
    ours = bt.BatchRenorm(C, momentum=0.2, r_max=1.5, d_max=0.5, dtype=F64)
    ref = bnp.BatchRenorm(C, momentum=0.2, r_max=1.5, d_max=0.5, dtype=dtype)
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(0.5, 2, C, dtype=F64))
        ours.bias.copy_(torch.linspace(-1, 1, C, dtype=F64))
    ref.gamma[...], ref.beta[...] = ours.weight.detach().numpy(), ours.bias.detach().numpy()
    rng = np.random.default_rng(0)
    for step in range(5):
        if step == 4:
            ours.eval(), ref.eval()
        x = rng.standard_normal((6, C, 3)) * (1 + step) + 2 * step    # r and d get clipped
        dy = rng.standard_normal(x.shape)
        tx = torch.tensor(x, requires_grad=True)
        y = ours(tx)
        y.backward(torch.tensor(dy))
        assert_close(y.detach().numpy(), ref(x), dtype, what=f"y step {step}")
        assert_close(tx.grad.numpy(), ref.backward(dy), dtype, what=f"dx step {step}")
        assert_close(ours.weight.grad.numpy(), ref.grads["gamma"], dtype, what="dweight")
        assert_close(ours.bias.grad.numpy(), ref.grads["beta"], dtype, what="dbias")
        ours.zero_grad()
        assert_close(ours.running_mean.numpy(), ref.running_mean, dtype, what="running_mean")
        assert_close(ours.running_std.numpy(), ref.running_std, dtype, what="running_std")
    assert int(ours.num_batches_tracked) == ref.num_batches_tracked == 4


def test_batch_renorm_with_r_max_1_and_d_max_0_is_batch_norm():
    x, dy = _rand((7, 3, 4), F64, 0, 2, 1), _rand((7, 3, 4), F64, 1)
    w, b = _rand((3,), F64, 2, 0.3, 1), _rand((3,), F64, 3)
    rm, rs = torch.randn(3, dtype=F64), torch.rand(3, dtype=F64) + 0.5
    renorm = lambda x, w, b: bt.batch_renorm(x, rm.clone(), rs.clone(), w, b, True, 0.1, 1e-5, 1.0, 0.0)
    plain = lambda x, w, b: F.batch_norm(x, None, None, w, b, True)
    for got, want in zip(_grads(renorm, x, w, b, dy), _grads(plain, x, w, b, dy)):
        assert_close(got.numpy(), want.numpy(), "float64")


def test_batch_renorm_gradcheck():
    """The backward holds r and d constant (stop-gradient).  That is the true derivative
    where both are clipped, hence locally constant: make them so (σ_B/σ ≈ 3 > r_max,
    |μ_B − μ|/σ ≈ 6 > d_max); momentum 0 keeps the running statistics fixed."""
    rm, rs = torch.full((3,), -5.0, dtype=F64), torch.ones(3, dtype=F64)
    f = lambda x, w, b: bt.batch_renorm(x, rm, rs, w, b, True, 0.0, 1e-5, 1.2, 0.3)
    args = (_rand((5, 3, 2), F64, 0, 3, 1).requires_grad_(), _rand((3,), F64, 1).requires_grad_(),
            _rand((3,), F64, 2).requires_grad_())
    assert torch.autograd.gradcheck(f, args) and torch.autograd.gradgradcheck(f, args)


# ----------------------------------------------------------------------------- errors


X = torch.randn(4, 6, 5)
SAME_MESSAGE = {
    "layer_norm shape": (lambda m: m.layer_norm(X, (4,))),
    "layer_norm weight": (lambda m: m.layer_norm(X, (5,), torch.ones(4))),
    "layer_norm bias": (lambda m: m.layer_norm(X, (5,), None, torch.ones(4))),
    "rms_norm weight": (lambda m: m.rms_norm(X, (5,), torch.ones(4))),
    "group_norm groups": (lambda m: m.group_norm(X, 4)),
    "group_norm weight": (lambda m: m.group_norm(X, 3, torch.ones(5))),
    "instance_norm spatial": (lambda m: m.instance_norm(torch.randn(2, 3, 1))),
    "instance_norm eval needs stats": (lambda m: m.instance_norm(X, use_input_stats=False)),
}


@pytest.mark.parametrize("case", SAME_MESSAGE)
def test_errors_have_torchs_message(case):
    call = SAME_MESSAGE[case]
    with pytest.raises(Exception) as theirs:
        call(F)
    with pytest.raises(ValueError) as ours:
        call(bt)
    assert str(ours.value) == str(theirs.value)
    assert isinstance(ours.value, type(theirs.value))
