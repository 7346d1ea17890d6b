"""The cross-backend matrix: the same inputs through bncourse.numpy and bncourse.torch, for
every norm — forward, dx, dweight, dbias and, where there are any, running statistics."""

from conftest import assert_close, optional
import numpy as np
import pytest

torch = optional("torch")

import bncourse.numpy as bnp  # noqa: E402
import bncourse.torch as bt  # noqa: E402

DTYPES = ["float64", "float32"]


def _torch_grads(fn, x, w, b, dy):
    leaves = [None if a is None else torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = fn(*leaves)
    y.backward(torch.tensor(dy))
    return [y.detach().numpy()] + [None if t is None else t.grad.numpy() for t in leaves]


def _numpy_grads(forward, backward, x, w, b, dy):
    y, cache = forward(x, w, b)[:2]
    grads = list(backward(dy, cache))                 # RMS norm: (dx, dweight)
    return [y] + grads + [None] * (3 - len(grads))


# norm: (numpy forward(x, w, b), numpy backward, torch fn(x, w, b), x shape, parameter shape)
NORMS = {
    "batch_norm": (lambda x, w, b: bnp.batch_norm_forward(x, w, b), bnp.batch_norm_backward,
                   lambda x, w, b: bt.batch_norm(x, None, None, w, b, True), (16, 4, 5, 3), (4,)),
    "batch_norm_2d": (lambda x, w, b: bnp.batch_norm_forward(x, w, b), bnp.batch_norm_backward,
                      lambda x, w, b: bt.batch_norm(x, None, None, w, b, True), (300, 7), (7,)),
    "layer_norm": (lambda x, w, b: bnp.layer_norm_forward(x, (5, 3), w, b), bnp.layer_norm_backward,
                   lambda x, w, b: bt.layer_norm(x, (5, 3), w, b), (4, 6, 5, 3), (5, 3)),
    "rms_norm": (lambda x, w, b: bnp.rms_norm_forward(x, (3,), w), bnp.rms_norm_backward,
                 lambda x, w, b: bt.rms_norm(x, (3,), w), (4, 6, 3), (3,)),
    "group_norm": (lambda x, w, b: bnp.group_norm_forward(x, 2, w, b), bnp.group_norm_backward,
                   lambda x, w, b: bt.group_norm(x, 2, w, b), (4, 6, 5, 3), (6,)),
    "instance_norm": (lambda x, w, b: bnp.instance_norm_forward(x, w, b), bnp.instance_norm_backward,
                      lambda x, w, b: bt.instance_norm(x, weight=w, bias=b), (4, 6, 7), (6,)),
}


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_and_torch_agree(norm, dtype, rng):
    np_forward, np_backward, torch_fn, shape, pshape = NORMS[norm]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.5, 1.5, pshape).astype(dtype)
    b = None if norm == "rms_norm" else rng.standard_normal(pshape).astype(dtype)
    ours_np = _numpy_grads(np_forward, np_backward, x, w, b, dy)
    ours_torch = _torch_grads(torch_fn, x, w, b, dy)
    for a, e, what in zip(ours_torch, ours_np, ["y", "dx", "dweight", "dbias"]):
        if e is None:
            assert a is None, what
            continue
        assert a.dtype == e.dtype, what
        assert_close(a, e, dtype, what=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_layers_agree_over_training_then_eval(dtype, momentum, rng):
    C, shape = 3, (10, 3, 4)
    np_layer = bnp.BatchNorm(C, momentum=momentum, dtype=dtype)
    torch_layer = bt.BatchNorm1d(C, momentum=momentum, dtype=getattr(torch, dtype))
    for step in range(4):
        if step == 3:
            np_layer.eval(), torch_layer.eval()
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        y = torch_layer(tx)
        y.backward(torch.tensor(dy))
        assert_close(y.detach().numpy(), np_layer(x), dtype, what="y")
        assert_close(tx.grad.numpy(), np_layer.backward(dy), dtype, what="dx")
        assert_close(torch_layer.weight.grad.numpy(), np_layer.grads["gamma"], dtype, what="dweight")
        assert_close(torch_layer.bias.grad.numpy(), np_layer.grads["beta"], dtype, what="dbias")
        torch_layer.zero_grad()
        assert_close(torch_layer.running_mean.numpy(), np_layer.running_mean, dtype, what="running_mean")
        assert_close(torch_layer.running_var.numpy(), np_layer.running_var, dtype, what="running_var")
        assert int(torch_layer.num_batches_tracked) == np_layer.num_batches_tracked


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_renorm_agrees(dtype, rng):
    C, shape = 4, (8, 4, 3)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w, b = rng.uniform(0.5, 1.5, C).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rs = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 1.5, C).astype(dtype)
    y_np, cache, stats = bnp.batch_renorm_forward(x, w, b, rm, rs, 1.5, 0.5)
    grads_np = bnp.batch_renorm_backward(dy, cache)
    t_rm, t_rs = torch.tensor(rm), torch.tensor(rs)
    got = _torch_grads(lambda x, w, b: bt.batch_renorm(x, t_rm, t_rs, w, b, True, 0.25, 1e-5, 1.5, 0.5),
                       x, w, b, dy)
    for a, e, what in zip(got, [y_np, *grads_np], ["y", "dx", "dweight", "dbias"]):
        assert_close(a, e, dtype, what=what)
    # μ ← μ + f(μ_B − μ),  σ ← σ + f(σ_B − σ)
    assert_close(t_rm.numpy(), rm + 0.25 * (stats.mean - rm), dtype, what="running_mean")
    assert_close(t_rs.numpy(), rs + 0.25 * (stats.std - rs), dtype, what="running_std")


def test_half_precision_batch_norm_agrees(rng):
    x = (rng.standard_normal((64, 5, 6)) * 3 + 100).astype(np.float16)
    dy = rng.standard_normal(x.shape).astype(np.float16)
    y_np, cache = bnp.batch_norm_forward(x, None, None)
    dx_np = bnp.batch_norm_backward(dy, cache)[0]
    y, dx = _torch_grads(lambda x, w, b: bt.batch_norm(x, None, None, None, None, True), x, None, None, dy)[:2]
    assert y.dtype == dx.dtype == np.float16
    assert_close(y, y_np, "float16", what="y")
    assert_close(dx, dx_np, "float16", what="dx")
