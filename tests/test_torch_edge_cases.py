"""Edge cases of bncourse.torch against what torch.nn does on the same call, computed here
(never hardcoded): empty batches, memory formats of outputs and gradients, the errors and
the accepted/refused arguments (README, "Differences from torch.nn")."""

import pytest

from conftest import assert_close, optional

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
