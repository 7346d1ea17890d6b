"""Layer, instance, group and RMS norm against torch.nn.functional (forward and gradients);
batch renorm against a float64 transcription of Ioffe (2017) with autograd through it."""

from conftest import assert_close
import numpy as np
import pytest

import bncourse.numpy as bnp

DTYPES = ["float64", "float32"]


def _grads(torch, fn, x, params, dy):
    """torch forward + gradients w.r.t. x and each non-None parameter, computed by torch in
    float64 on the same values: torch's float32 kernels round more than ours (e.g. group
    norm over 2-value groups), so the float32 check is against the exact result."""
    t64 = lambda a, grad: None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=grad)
    tx = t64(x, True)
    tp = [t64(p, True) for p in params]
    y = fn(tx, *tp)
    y.backward(t64(dy, False))
    return y.detach().numpy(), tx.grad.numpy(), [None if p is None else p.grad.numpy() for p in tp]


def _check(y, dx, dparams, ty, tdx, tdparams, dtype):
    assert y.dtype == dx.dtype == np.dtype(dtype)
    assert_close(y, ty, dtype, what="y")
    assert_close(dx, tdx, dtype, what="dx")
    for a, e in zip(dparams, tdparams):
        assert (a is None) == (e is None)
        if a is not None:
            assert_close(a, e, dtype, what="parameter grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,normalized", [((4, 6), (6,)), ((3, 5, 7), (7,)), ((2, 3, 4, 5), (4, 5))])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(torch, rng, dtype, shape, normalized, affine):
    import torch.nn.functional as F
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    w = rng.uniform(0.5, 2, normalized).astype(dtype) if affine else None
    b = rng.standard_normal(normalized).astype(dtype) if affine else None
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = bnp.layer_norm_forward(x, normalized, w, b)
    dx, dw, db = bnp.layer_norm_backward(dy, cache)
    ref = _grads(torch, lambda t, w_, b_: F.layer_norm(t, normalized, w_, b_, 1e-5), x, [w, b], dy)
    _check(y, dx, [dw, db], *ref[:2], ref[2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 7), (2, 3, 4, 5), (2, 2, 3, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm(torch, rng, dtype, shape, affine):
    import torch.nn.functional as F
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    w = rng.uniform(0.5, 2, C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = bnp.instance_norm_forward(x, w, b)
    dx, dw, db = bnp.instance_norm_backward(dy, cache)
    ref = _grads(torch, lambda t, w_, b_: F.instance_norm(t, weight=w_, bias=b_, eps=1e-5), x, [w, b], dy)
    _check(y, dx, [dw, db], *ref[:2], ref[2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups", [((4, 6), 3), ((3, 6, 5), 2), ((2, 8, 3, 4), 4), ((2, 4, 2, 3, 2), 1),
                                          ((2, 4, 3, 3), 4)])
def test_group_norm(torch, rng, dtype, shape, groups):
    import torch.nn.functional as F
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    w, b = rng.uniform(0.5, 2, C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = bnp.group_norm_forward(x, groups, w, b)
    dx, dw, db = bnp.group_norm_backward(dy, cache)
    ref = _grads(torch, lambda t, w_, b_: F.group_norm(t, groups, w_, b_, 1e-5), x, [w, b], dy)
    _check(y, dx, [dw, db], *ref[:2], ref[2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,normalized", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5))])
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rms_norm(torch, rng, dtype, shape, normalized, eps):
    import torch.nn.functional as F
    x = (rng.standard_normal(shape) + 0.5).astype(dtype)
    w = rng.uniform(0.5, 2, normalized).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = bnp.rms_norm_forward(x, normalized, w, eps)
    dx, dw = bnp.rms_norm_backward(dy, cache)
    ref = _grads(torch, lambda t, w_: F.rms_norm(t, normalized, w_, eps), x, [w], dy)
    _check(y, dx, [dw], *ref[:2], ref[2], dtype)


# ----------------------------------------------------------------------------- batch renorm


def _paper_batch_renorm(torch, x, gamma, beta, mu, sigma, r_max, d_max, eps):
    """Algorithm 1 of Ioffe (2017), transcribed in float64 torch with r, d stop-gradient."""
    axes = [0] + list(range(2, x.dim()))
    view = (1, -1) + (1,) * (x.dim() - 2)
    mu_b = x.mean(dim=axes)
    sigma_b = torch.sqrt(((x - mu_b.view(view)) ** 2).mean(dim=axes) + eps)
    r = torch.clamp(sigma_b / sigma, 1 / r_max, r_max).detach()
    d = torch.clamp((mu_b - mu) / sigma, -d_max, d_max).detach()
    xhat = (x - mu_b.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view)
    return gamma.view(view) * xhat + beta.view(view), mu_b.detach(), sigma_b.detach()


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 2)])
@pytest.mark.parametrize("r_max,d_max", [(1.0, 0.0), (1.5, 0.5), (3.0, 5.0)])
def test_batch_renorm_training_step_matches_the_paper(torch, rng, shape, r_max, d_max):
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    mu, sigma = rng.standard_normal(C), rng.uniform(0.5, 3, C)     # running statistics
    dy = rng.standard_normal(shape)
    y, cache, stats = bnp.batch_renorm_forward(x, gamma, beta, mu, sigma, r_max, d_max)
    dx, dg, db = bnp.batch_renorm_backward(dy, cache)

    tx = torch.tensor(x, requires_grad=True)
    tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    ty, mu_b, sigma_b = _paper_batch_renorm(torch, tx, tg, tb, torch.tensor(mu), torch.tensor(sigma),
                                            r_max, d_max, 1e-5)
    ty.backward(torch.tensor(dy))
    _check(y, dx, [dg, db], ty.detach().numpy(), tx.grad.numpy(), [tg.grad.numpy(), tb.grad.numpy()], "float64")
    assert_close(stats.mean, mu_b.numpy(), "float64")
    assert_close(stats.std, sigma_b.numpy(), "float64")
    if r_max == 1.0 and d_max == 0.0:                                # = batch norm
        by, bcache = bnp.batch_norm_forward(x, gamma, beta)
        assert_close(y, by, "float64", what="renorm(r_max=1, d_max=0) == batch norm")


def test_batch_renorm_layer_updates_running_std_and_infers_with_it(rng):
    layer = bnp.BatchRenorm(3, momentum=0.2, dtype="float64")
    mu, sigma = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.standard_normal((8, 3)) * 2 + 1
        layer(x)
        mu = mu + 0.2 * (x.mean(0) - mu)
        sigma = sigma + 0.2 * (np.sqrt(x.var(0) + 1e-5) - sigma)
    assert_close(layer.running_mean, mu, "float64")
    assert_close(layer.running_std, sigma, "float64")
    layer.eval()
    x = rng.standard_normal((5, 3))
    assert_close(layer(x), (x - mu) / sigma, "float64", what="eval output")


@pytest.mark.parametrize("cls,args,shape", [
    ("LayerNorm", ((5,),), (4, 5)), ("RMSNorm", ((5,),), (4, 5)), ("GroupNorm", (2, 4), (3, 4, 6)),
    ("InstanceNorm", (4,), (3, 4, 6)), ("BatchRenorm", (4,), (6, 4)),
])
def test_layers_run_forward_and_backward(rng, cls, args, shape):
    layer = getattr(bnp, cls)(*args)
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.shape == dx.shape == x.shape and y.dtype == dx.dtype == np.float32
    assert set(layer.grads) == set(layer.parameters())
