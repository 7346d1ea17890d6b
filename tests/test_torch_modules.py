"""bncourse.torch.BatchNorm1d/2d/3d and convert_batchnorm against torch.nn: constructor,
state, state dicts both ways, train/eval, input checks, and real models trained side by side."""

import copy

from conftest import assert_close, optional, tol
import pytest

torch = optional("torch")
from torch import nn  # noqa: E402
import torch_models  # noqa: E402

import bncourse.torch as bt  # noqa: E402

PAIRS = [(bt.BatchNorm1d, nn.BatchNorm1d, (6, 4)), (bt.BatchNorm1d, nn.BatchNorm1d, (6, 4, 5)),
         (bt.BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 2)), (bt.BatchNorm3d, nn.BatchNorm3d, (2, 4, 3, 2, 2))]
KWARGS = [dict(), dict(momentum=None), dict(momentum=0.5, eps=1e-3), dict(affine=False),
          dict(track_running_stats=False), dict(bias=False)]


def _pair(ours_cls, torch_cls, dtype=torch.float64, **kw):
    ours, theirs = ours_cls(4, dtype=dtype, **kw), torch_cls(4, dtype=dtype, **kw)
    if ours.affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 2.0)
        theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("ours_cls, torch_cls, shape", PAIRS)
@pytest.mark.parametrize("kw", KWARGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_module_matches_torch_over_training_then_eval(ours_cls, torch_cls, shape, kw):
    ours, theirs = _pair(ours_cls, torch_cls, **kw)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        if step == 3:
            ours.eval(), theirs.eval()
        x = torch.randn(shape, generator=g, dtype=torch.float64) * (1 + step) + step
        dy = torch.randn(shape, generator=g, dtype=torch.float64)
        results = []
        for m in (ours, theirs):
            xs = x.clone().requires_grad_()
            y = m(xs)
            y.backward(dy)
            grads = [p.grad.clone() for p in m.parameters()]
            m.zero_grad()
            results.append([y.detach(), xs.grad] + grads + list(m.buffers()))
        assert len(results[0]) == len(results[1])
        for a, e in zip(*results):
            assert a.dtype == e.dtype
            assert_close(a.numpy(), e.numpy(), "float64", what=f"step {step}")


def test_state_dicts_move_both_ways_and_old_checkpoints_load():
    theirs = nn.BatchNorm2d(5)
    theirs.train()(torch.randn(4, 5, 3, 3))                  # non-default buffers
    ours = bt.BatchNorm2d(5)
    ours.load_state_dict(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    back = nn.BatchNorm2d(5)
    back.load_state_dict(ours.state_dict())
    assert int(back.num_batches_tracked) == 1
    # a pre-0.4.0 checkpoint: no num_batches_tracked and no version in the metadata
    old = theirs.state_dict()
    del old["num_batches_tracked"]
    old._metadata[""].pop("version")
    fresh = bt.BatchNorm2d(5)
    fresh.load_state_dict(old)
    assert int(fresh.num_batches_tracked) == 0
    assert torch.equal(fresh.running_mean, theirs.running_mean)


def test_reset_and_mode_switches_are_torchs():
    m = bt.BatchNorm1d(3, momentum=None)
    m(torch.randn(5, 3) + 2)
    assert int(m.num_batches_tracked) == 1 and not torch.equal(m.running_mean, torch.zeros(3))
    m.reset_running_stats()
    assert int(m.num_batches_tracked) == 0 and torch.equal(m.running_var, torch.ones(3))
    with torch.no_grad():
        m.weight.fill_(3)
    m.reset_parameters()
    assert torch.equal(m.weight, torch.ones(3))
    assert m.eval().training is False and m.train().training is True
    assert isinstance(m, nn.BatchNorm1d) and isinstance(m, nn.modules.batchnorm._BatchNorm)


@pytest.mark.parametrize("cls, bad", [(bt.BatchNorm1d, (2, 3, 4, 5)), (bt.BatchNorm2d, (4, 3)),
                                      (bt.BatchNorm3d, (2, 3, 4, 5))])
def test_input_checks_have_torchs_messages(cls, bad):
    torch_cls = getattr(nn, cls.__name__)
    with pytest.raises(ValueError) as theirs:
        torch_cls(3)(torch.randn(bad))
    with pytest.raises(ValueError) as ours:
        cls(3)(torch.randn(bad))
    assert str(ours.value) == str(theirs.value)


def test_a_failed_forward_changes_no_buffer():
    m = bt.BatchNorm1d(3)
    for bad in (torch.randn(1, 3), torch.randn(4, 5)):       # one value per channel; C = 5
        with pytest.raises(ValueError):
            m(bad)
    assert int(m.num_batches_tracked) == 0
    assert torch.equal(m.running_mean, torch.zeros(3)) and torch.equal(m.running_var, torch.ones(3))


# ----------------------------------------------------------------------------- convert_batchnorm


def test_convert_batchnorm_keeps_tensors_hooks_and_shared_modules():
    shared = nn.BatchNorm1d(4)
    model = nn.Sequential(nn.Linear(3, 4), shared, nn.Sequential(nn.ReLU(), shared),
                          nn.ModuleDict({"deep": nn.Sequential(nn.BatchNorm1d(4, affine=False))}))
    model.eval()
    seen = []
    shared.register_forward_hook(lambda m, i, o: seen.append(type(m)))
    before = {k: v for k, v in model.state_dict(keep_vars=True).items()}
    out = bt.convert_batchnorm(model)
    assert out is model
    assert type(model[1]) is bt.BatchNorm1d and model[2][1] is model[1]    # still shared
    assert type(model[3]["deep"][0]) is bt.BatchNorm1d
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)
    assert model[1].training is False
    model[:3](torch.randn(5, 3))
    assert seen == [bt.BatchNorm1d, bt.BatchNorm1d]
    bn = nn.BatchNorm2d(3, dtype=torch.float64)
    assert type(bt.convert_batchnorm(bn)) is bt.BatchNorm2d        # a BN itself: a new module
    assert bt.convert_batchnorm(bn).weight is bn.weight


def test_convert_batchnorm_leaves_other_modules_alone():
    class Custom(nn.BatchNorm1d):
        pass
    model = nn.Sequential(Custom(3), nn.SyncBatchNorm(3), nn.LazyBatchNorm1d(), nn.LayerNorm(3))
    types = [type(m) for m in model]
    bt.convert_batchnorm(model)
    assert [type(m) for m in model] == types


# ----------------------------------------------------------------------------- real models


def _step(model, x, target, lr=0.1):
    for p in model.parameters():
        p.grad = None
    out = model(x)
    nn.functional.cross_entropy(out, target).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return out.detach(), grads


@pytest.mark.parametrize("kind", ["resnet", "mlp"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_converted_model_trains_like_torch(kind, dtype):
    stock = getattr(torch_models, kind)(dtype=dtype)
    ours = bt.convert_batchnorm(copy.deepcopy(stock))
    converted = [m for m in ours.modules() if isinstance(m, bt.modules._BatchNorm)]
    assert len(converted) == sum(isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.BatchNorm1d)
                                 for m in stock.modules()) > 0
    rtol = 1e-10 if dtype == torch.float64 else tol("float32")    # measured: 1e-15 / 3e-7
    for step, (x, target) in enumerate(torch_models.batches(kind, 4, dtype)):
        out_s, grads_s = _step(stock, x, target)
        out_o, grads_o = _step(ours, x, target)
        assert_close(out_o.numpy(), out_s.numpy(), rtol=rtol, what=f"output step {step}")
        for n in grads_s:
            assert_close(grads_o[n].numpy(), grads_s[n].numpy(), rtol=rtol, what=f"grad {n} step {step}")
        for (n, a), (_, e) in zip(ours.named_buffers(), stock.named_buffers()):
            assert_close(a.numpy(), e.numpy(), rtol=rtol, what=f"buffer {n} step {step}")
    stock.eval(), ours.eval()
    x, _ = torch_models.batches(kind, 1, dtype, seed=9)[0]
    with torch.no_grad():
        assert_close(ours(x).numpy(), stock(x).numpy(), rtol=rtol, what="eval output")
