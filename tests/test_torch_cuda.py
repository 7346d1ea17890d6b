"""bncourse.torch on CUDA tensors against torch on the same device: batch norm forward,
backward (dx, dweight, dbias), running statistics (momentum=None: cumulative;
num_batches_tracked), eval mode, state dicts both ways, the alternatives, and
convert_batchnorm of a small ResNet.

Every test runs on ``cpu`` and on ``cuda``: the ``cuda`` cases are marked ``gpu`` and are
skipped with the reason "CUDA not available: torch.cuda.is_available() is False" without a
GPU, while the same assertions run on ``cpu`` and so prove the test code itself.
``python -m pytest -m gpu tests/test_torch_cuda.py`` runs the CUDA half (tools/gpu_check.sh).

float64 is held to TOL["float64"]; float32 to TOL["float32"] (torch's float32 kernels
accumulate in float32, ours in float64).  float16 inputs (float32 parameters, as under
autocast) are computed in float32 and rounded once: the reference is torch on the same
values in float32 (torch's own float16 paths round some intermediates on CPU), y and dx
held to 2e-3 normwise (about one float16 ulp of |y| ~ 4), the float32 parameter
gradients and running statistics to TOL["float32"].
"""

import copy

from conftest import assert_close, optional, tol
import pytest

torch = optional("torch")
from test_torch_alternatives import CASES, _grads, _rand
from test_torch_functional import make, run
from test_torch_modules import _step
from torch import nn
import torch.nn.functional as F
import torch_models

import bncourse.torch as bt

NO_CUDA = "CUDA not available: torch.cuda.is_available() is False"
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[
               pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)])]
DTYPES = [torch.float64, torch.float32, torch.float16]
SHAPES = [(16, 5), (4, 3, 7), (4, 3, 5, 6), (2, 3, 4, 5, 3)]        # 2-D to 5-D
HALF_RTOL = 2e-3


def _name(dtype):
    return str(dtype).rsplit(".", 1)[-1]


def _host(t):
    """A tensor's values on the host, as float64 NumPy (what assert_close reads)."""
    return t.detach().to("cpu", torch.float64).numpy()


def _rtol(dtype, what):
    """Normwise tolerance for one result of a ``dtype`` input."""
    if dtype == torch.float16:
        return HALF_RTOL if what in ("y", "dx") else tol("float32")   # parameters are float32
    return tol(_name(dtype))


def _inputs(shape, dtype, device, affine=True):
    """make()'s x, w, b, dy on ``device``; float16: x and dy rounded, w and b float32."""
    x, w, b, dy = make(shape, torch.float32 if dtype == torch.float16 else dtype, affine)
    if dtype == torch.float16:
        x, dy = x.half(), dy.half()
    return [None if t is None else t.to(device) for t in (x, w, b, dy)]


def _param_dtype(dtype):
    return torch.float32 if dtype == torch.float16 else dtype


def _ref(*tensors):
    """The reference's inputs: float16 tensors as float32 (the same values)."""
    return [t.float() if t is not None and t.dtype == torch.float16 else t for t in tensors]


def _compare(ours, theirs, dtype, names, device):
    for a, e, what in zip(ours, theirs, names):
        if e is None:
            assert a is None, what
            continue
        half_out = dtype == torch.float16 and what in ("y", "dx")    # ours: in the input's dtype
        assert a.device.type == device and a.dtype == (dtype if half_out else e.dtype), what
        assert_close(_host(a), _host(e), rtol=_rtol(dtype, what), what=what)


# ----------------------------------------------------------------------------- functional


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_training_matches_torch(device, dtype, shape, affine):
    x, w, b, dy = _inputs(shape, dtype, device, affine)
    C, pdt = shape[1], _param_dtype(dtype)
    ours_running = (torch.randn(C, dtype=pdt).to(device), (torch.rand(C, dtype=pdt) + 0.5).to(device))
    theirs_running = tuple(t.clone() for t in ours_running)
    ours = run(bt.batch_norm, x, w, b, dy, ours_running, momentum=0.3)
    theirs = run(F.batch_norm, *_ref(x, w, b, dy), theirs_running, momentum=0.3)
    _compare(ours, theirs, dtype, ["y", "dx", "dweight", "dbias"], device)
    _compare(ours_running, theirs_running, dtype, ["running_mean", "running_var"], device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_eval_matches_torch_and_leaves_the_statistics(device, dtype):
    x, w, b, dy = _inputs((6, 4, 5, 3), dtype, device)
    pdt = _param_dtype(dtype)
    running = (torch.randn(4, dtype=pdt).to(device), (torch.rand(4, dtype=pdt) + 0.5).to(device))
    before = [t.clone() for t in running]
    ours = run(bt.batch_norm, x, w, b, dy, running, training=False, eps=1e-3)
    theirs = run(F.batch_norm, *_ref(x, w, b, dy), running, training=False, eps=1e-3)
    _compare(ours, theirs, dtype, ["y", "dx", "dweight", "dbias"], device)
    assert all(torch.equal(a, e) for a, e in zip(running, before))


# ----------------------------------------------------------------------------- modules

PAIRS = [(bt.BatchNorm1d, nn.BatchNorm1d, (16, 4)), (bt.BatchNorm1d, nn.BatchNorm1d, (6, 4, 5)),
         (bt.BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 2)), (bt.BatchNorm3d, nn.BatchNorm3d, (2, 4, 3, 2, 2))]
MODULE_KWARGS = [{}, {"momentum": None}, {"track_running_stats": False}]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
@pytest.mark.parametrize("ours_cls, torch_cls, shape", PAIRS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("kw", MODULE_KWARGS, ids=["momentum=0.1", "momentum=None", "untracked"])
def test_modules_match_torch_over_training_then_eval(device, dtype, ours_cls, torch_cls, shape, kw):
    pdt = _param_dtype(dtype)          # float16 inputs go to float32 modules, as under autocast
    ours = ours_cls(4, dtype=pdt, device=device, **kw)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1.0, 1.0)
    theirs = torch_cls(4, dtype=pdt, device=device, **kw)
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        if step == 3:
            ours.eval(), theirs.eval()
        x = (torch.randn(shape, generator=g, dtype=torch.float64) * (1 + step) + step).to(device, dtype)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)
        results = []
        for m, (xm, dym) in ((ours, (x, dy)), (theirs, _ref(x, dy))):
            xs = xm.clone().requires_grad_()
            y = m(xs)
            y.backward(dym)
            results.append([y.detach(), xs.grad] + [p.grad.clone() for p in m.parameters()]
                           + [t.clone() for t in m.buffers()])
            m.zero_grad()
        names = ["y", "dx", "dweight", "dbias"] + [n for n, _ in ours.named_buffers()]
        assert len(results[0]) == len(results[1]) == len(names)
        _compare(*results, dtype, names, device)
    if ours.track_running_stats:          # momentum=None: the average over these 3 batches
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3


@pytest.mark.parametrize("device", DEVICES)
def test_state_dicts_move_both_ways(device):
    theirs = nn.BatchNorm2d(5, momentum=None, device=device)
    for _ in range(2):
        theirs(torch.randn(4, 5, 3, 3, device=device) * 3 + 1)          # non-default buffers
    ours = bt.BatchNorm2d(5, momentum=None, device=device)
    ours.load_state_dict(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert ours.state_dict()[k].device == v.device and torch.equal(ours.state_dict()[k], v), k
    x = torch.randn(4, 5, 3, 3, device=device) * 2 - 1
    ours(x), theirs(x)                    # a third batch: cumulative average of three
    back = nn.BatchNorm2d(5, device=device)
    back.load_state_dict(ours.state_dict())
    assert int(back.num_batches_tracked) == 3
    for k, v in back.state_dict().items():
        assert_close(_host(v), _host(theirs.state_dict()[k]), "float32", what=k)
    # a checkpoint saved on one device loads into a module on the other, and back
    other = "cpu" if device != "cpu" else device
    moved = bt.BatchNorm2d(5, device=other)
    moved.load_state_dict(ours.state_dict())
    assert moved.running_mean.device.type == other
    assert torch.equal(moved.running_var.to(device), ours.running_var)
    assert ours.to("cpu").to(device).running_mean.device.type == device


# ----------------------------------------------------------------------------- alternatives


# torch's own float16 paths are no reference (on CPU, layer and RMS norm dweight are off by
# 5e-5 to 2e-4 normwise); rms_norm's default eps is the *input's* machine epsilon, so its
# float32 reference is given float16's.
HALF_REFERENCE = {"rms_norm": lambda x, w, b: F.rms_norm(x, (5, 3), w, eps=torch.finfo(torch.float16).eps)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_alternatives_match_torch(device, case, dtype):
    ours, theirs, shape, pshape = CASES[case]
    pdt = _param_dtype(dtype)
    x, dy = _rand(shape, dtype, 0, 2.0, 3.0).to(device), _rand(shape, dtype, 1).to(device)
    w, b = _rand(pshape, pdt, 2, 0.5, 1.0).to(device), _rand(pshape, pdt, 3).to(device)
    if dtype == torch.float16:
        theirs = HALF_REFERENCE.get(case, theirs)
    got, want = _grads(ours, x, w, b, dy), _grads(theirs, *_ref(x, w, b, dy))
    _compare(got, want, dtype, ["y", "dx", "dweight", "dbias"], device)


# ----------------------------------------------------------------------------- convert_batchnorm


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=_name)
def test_converted_resnet_trains_like_torch(device, dtype):
    # cuDNN's float32 convolutions default to TF32 (10-bit mantissa), which would turn the
    # 1e-7 differences of the two batch norms into 1e-3 ones; deterministic algorithms too
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        _train_side_by_side(device, dtype)


def _train_side_by_side(device, dtype):
    stock = torch_models.resnet(dtype=dtype).to(device)
    ours = bt.convert_batchnorm(copy.deepcopy(stock))
    assert sum(type(m) is bt.BatchNorm2d for m in ours.modules()) == 9
    assert all(p.device.type == device for p in ours.parameters())
    rtol = 1e-10 if dtype == torch.float64 else tol("float32")
    for step, (x, target) in enumerate(torch_models.batches("resnet", 3, dtype)):
        x, target = x.to(device), target.to(device)
        out_s, grads_s = _step(stock, x, target)
        out_o, grads_o = _step(ours, x, target)
        assert_close(_host(out_o), _host(out_s), rtol=rtol, what=f"output step {step}")
        for n in grads_s:
            assert_close(_host(grads_o[n]), _host(grads_s[n]), rtol=rtol, what=f"grad {n} step {step}")
        for (n, a), (_, e) in zip(ours.named_buffers(), stock.named_buffers()):
            assert_close(_host(a), _host(e), rtol=rtol, what=f"buffer {n} step {step}")
    stock.eval(), ours.eval()
    x = torch_models.batches("resnet", 1, dtype, seed=9)[0][0].to(device)
    with torch.no_grad():
        assert_close(_host(ours(x)), _host(stock(x)), rtol=rtol, what="eval output")
