"""bncourse.torch under torch.func (vmap, grad, jacrev, jacfwd, jvp, vmap(grad)) and
forward-mode AD, against the same torch.nn.functional call in float64 (normwise 1e-12)."""

from conftest import assert_close, optional
import pytest

torch = optional("torch")
import torch.autograd.forward_ad as fwAD  # noqa: E402
from torch.func import grad, jacfwd, jacrev, jvp, vmap  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bncourse.torch as bt  # noqa: E402

D = torch.float64


def close(actual, expected, what="value"):
    """float64 agreement, normwise: max|a − e| <= 1e-12·max(1, max|e|)."""
    return assert_close(actual.detach(), expected.detach(), "float64", what=what)


def _g(seed):
    return torch.Generator().manual_seed(seed)


def params(C, seed=1):
    g = _g(seed)
    return (torch.rand(C, generator=g, dtype=D) + 0.5, torch.randn(C, generator=g, dtype=D),
            torch.randn(C, generator=g, dtype=D), torch.rand(C, generator=g, dtype=D) + 0.5)


W, B, RM, RV = params(4)
LW, LB = (torch.rand(3, 5, generator=_g(2), dtype=D) + 0.5), torch.randn(3, 5, generator=_g(3), dtype=D)


def cases():
    """name -> (ours(mod), per-sample input shape): ``mod`` is bncourse.torch or F."""
    return {
        "batch_norm-train": (lambda m: lambda x: m.batch_norm(x, None, None, W, B, True), (6, 4, 3)),
        "batch_norm-eval": (lambda m: lambda x: m.batch_norm(x, RM, RV, W, B, False), (6, 4, 3)),
        "batch_norm-2d-train": (lambda m: lambda x: m.batch_norm(x, None, None, W, B, True), (7, 4)),
        "layer_norm": (lambda m: lambda x: m.layer_norm(x, (3, 5), LW, LB), (2, 3, 5)),
        "group_norm": (lambda m: lambda x: m.group_norm(x, 2, W, B), (3, 4, 5)),
        "instance_norm-train": (lambda m: lambda x: m.instance_norm(x, None, None, W, B, True), (3, 4, 5)),
        "instance_norm-eval": (lambda m: lambda x: m.instance_norm(x, RM, RV, W, B, False), (3, 4, 5)),
        "rms_norm": (lambda m: lambda x: m.rms_norm(x, (3, 5), LW, 1e-6), (2, 3, 5)),
    }


CASES = cases()
NAMES = list(CASES)


def inputs(name, batch=None, seed=0):
    shape = CASES[name][1]
    shape = shape if batch is None else (batch,) + shape
    g = _g(seed)
    return torch.randn(shape, generator=g, dtype=D) * 2 + 3


def pair(name):
    make = CASES[name][0]
    return make(bt), make(F)


def loss(f):
    """A scalar with a non-trivial gradient (a sum alone has dx = 0 through a norm)."""
    return lambda x: (f(x) ** 3).sum()


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_a_batch_of_batches(name):
    ours, theirs = pair(name)
    x = inputs(name, batch=3)
    close(vmap(ours)(x), vmap(theirs)(x), what=name)
    close(vmap(ours, in_dims=1)(x.movedim(0, 1)), vmap(theirs)(x), what=name + " in_dims=1")


@pytest.mark.parametrize("name", NAMES)
def test_grad_and_vmap_of_grad(name):
    ours, theirs = pair(name)
    x = inputs(name, batch=3)
    close(grad(loss(ours))(x[0]), grad(loss(theirs))(x[0]), what="grad")
    close(vmap(grad(loss(ours)))(x), vmap(grad(loss(theirs)))(x), what="vmap(grad)")


@pytest.mark.parametrize("name", NAMES)
def test_jacrev_jacfwd_jvp(name):
    ours, theirs = pair(name)
    x = inputs(name)
    t = torch.randn(x.shape, generator=_g(5), dtype=D)
    expected = jacrev(theirs)(x)
    close(jacrev(ours)(x), expected, what="jacrev")
    close(jacfwd(ours)(x), expected, what="jacfwd")
    (y, dy), (ey, edy) = jvp(ours, (x,), (t,)), jvp(theirs, (x,), (t,))
    close(y, ey, what="jvp primal")
    close(dy, edy, what="jvp tangent")


@pytest.mark.parametrize("name", NAMES)
def test_forward_mode_dual_tensors(name):
    ours, theirs = pair(name)
    x = inputs(name)
    t = torch.randn(x.shape, generator=_g(6), dtype=D)
    with fwAD.dual_level():
        a = fwAD.unpack_dual(ours(fwAD.make_dual(x, t))).tangent
        e = fwAD.unpack_dual(theirs(fwAD.make_dual(x, t))).tangent
    close(a, e, what="tangent")


def _with_params(name):
    """(f(x, w, b), args): the case with its parameters as differentiable arguments."""
    x = inputs(name)
    if name.startswith(("layer_norm", "rms_norm")):
        w, b = LW.clone(), LB.clone()
    else:
        w, b = W.clone(), B.clone()
    fns = {
        "batch_norm-train": lambda x, w, b: bt.batch_norm(x, None, None, w, b, True),
        "batch_norm-eval": lambda x, w, b: bt.batch_norm(x, RM, RV, w, b, False),
        "batch_norm-2d-train": lambda x, w, b: bt.batch_norm(x, None, None, w, b, True),
        "layer_norm": lambda x, w, b: bt.layer_norm(x, (3, 5), w, b),
        "group_norm": lambda x, w, b: bt.group_norm(x, 2, w, b),
        "instance_norm-train": lambda x, w, b: bt.instance_norm(x, None, None, w, b, True),
        "instance_norm-eval": lambda x, w, b: bt.instance_norm(x, RM, RV, w, b, False),
        "rms_norm": lambda x, w, b: bt.rms_norm(x, (3, 5), w, 1e-6) + b,
    }
    return fns[name], tuple(a.requires_grad_() for a in (x, w, b))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_batched_and_forward_ad(name):
    f, args = _with_params(name)
    assert torch.autograd.gradcheck(f, args, check_batched_grad=True, check_forward_ad=True,
                                    check_batched_forward_grad=True)


@pytest.mark.parametrize("name", NAMES)
def test_gradgradcheck(name):
    f, args = _with_params(name)
    assert torch.autograd.gradgradcheck(f, args)


@pytest.mark.parametrize("name", NAMES)
def test_jvp_in_weight_and_bias(name):
    """Tangents of the parameters too: the dw·x̂ + db terms of the forward-mode formula."""
    f, (x, w, b) = _with_params(name)
    fname = name.split("-")[0]
    ref = {"batch_norm": lambda x, w, b: F.batch_norm(x, None if "train" in name else RM,
                                                      None if "train" in name else RV, w, b,
                                                      "train" in name),
           "layer_norm": lambda x, w, b: F.layer_norm(x, (3, 5), w, b),
           "group_norm": lambda x, w, b: F.group_norm(x, 2, w, b),
           "instance_norm": lambda x, w, b: F.instance_norm(x, None if "train" in name else RM,
                                                            None if "train" in name else RV,
                                                            w, b, "train" in name),
           "rms_norm": lambda x, w, b: F.rms_norm(x, (3, 5), w, 1e-6) + b}[fname]
    primals = tuple(a.detach() for a in (x, w, b))
    tangents = tuple(torch.randn(a.shape, generator=_g(7 + i), dtype=D) for i, a in enumerate(primals))
    close(jvp(f, primals, tangents)[1], jvp(ref, primals, tangents)[1])
    close(jacfwd(f, argnums=(1, 2))(*primals)[0], jacfwd(ref, argnums=(1, 2))(*primals)[0])


# ----------------------------------------------------------------------------- batched parameters


def test_vmap_with_batched_parameters():
    x = inputs("batch_norm-train", batch=3)
    w = torch.rand(3, 4, generator=_g(8), dtype=D) + 0.5
    b = torch.randn(3, 4, generator=_g(9), dtype=D)
    for fn in (lambda m: lambda x, w, b: m.batch_norm(x, None, None, w, b, True),
               lambda m: lambda x, w, b: m.batch_norm(x, RM, RV, w, b, False),
               lambda m: lambda x, w, b: m.group_norm(x, 2, w, b),
               lambda m: lambda x, w, b: m.instance_norm(x, None, None, w, b, True)):
        for dims in ((0, 0, 0), (None, 0, 0), (0, None, 0), (0, 1, None)):
            ws = {None: w[0], 0: w, 1: w.T.contiguous()}[dims[1]]
            args = (x[0] if dims[0] is None else x, ws, b[0] if dims[2] is None else b)
            close(vmap(fn(bt), in_dims=dims)(*args), vmap(fn(F), in_dims=dims)(*args))
    xl = inputs("layer_norm", batch=3)
    wl = torch.rand(3, 3, 5, generator=_g(10), dtype=D) + 0.5
    bl = torch.randn(3, 3, 5, generator=_g(11), dtype=D)
    for dims in ((0, 0, 0), (None, 0, None), (0, None, 0)):
        args = (xl[0] if dims[0] is None else xl, wl if dims[1] is not None else wl[0], bl if dims[2] is not None else bl[0])
        for m in ("layer_norm", "rms_norm"):
            ours = (lambda x, w, b: bt.layer_norm(x, (3, 5), w, b)) if m == "layer_norm" else \
                (lambda x, w, b: bt.rms_norm(x, (3, 5), w, 1e-6) + b)
            theirs = (lambda x, w, b: F.layer_norm(x, (3, 5), w, b)) if m == "layer_norm" else \
                (lambda x, w, b: F.rms_norm(x, (3, 5), w, 1e-6) + b)
            close(vmap(ours, in_dims=dims)(*args), vmap(theirs, in_dims=dims)(*args), what=m)
            g = lambda f: grad(lambda x, w, b: (f(x, w, b) ** 3).sum(), argnums=(0, 1))
            for a, e in zip(vmap(g(ours), in_dims=dims)(*args), vmap(g(theirs), in_dims=dims)(*args)):
                close(a, e, what=m + " vmap(grad)")


# ----------------------------------------------------------------------------- running statistics


def test_vmap_training_updates_batched_running_stats_as_torch():
    x = inputs("batch_norm-train", batch=3)
    ours = [torch.randn(3, 4, generator=_g(12), dtype=D), torch.rand(3, 4, generator=_g(13), dtype=D) + .5]
    theirs = [t.clone() for t in ours]
    f = lambda m: lambda x, rm, rv: m.batch_norm(x, rm, rv, W, B, True, 0.3)
    close(vmap(f(bt))(x, *ours), vmap(f(F))(x, *theirs))
    for a, e in zip(ours, theirs):
        close(a, e, what="running statistics")
    # instance norm: its running statistics are batch averages, updated per vmapped sample
    x = inputs("instance_norm-train", batch=3)
    ours = [torch.randn(3, 4, generator=_g(14), dtype=D), torch.rand(3, 4, generator=_g(15), dtype=D) + .5]
    loop = [t.clone() for t in ours]
    vmap(lambda x, rm, rv: bt.instance_norm(x, rm, rv, W, B, True, 0.3))(x, *ours)
    for i in range(3):
        F.instance_norm(x[i], loop[0][i], loop[1][i], W, B, True, 0.3)
    for a, e in zip(ours, loop):
        close(a, e, what="instance-norm running statistics")


def test_vmap_running_stats_batched_along_another_dim_are_updated():
    """Running statistics vmapped along dim 1: each sample's column is updated (PyTorch
    2.13 leaves them unchanged without a word: a difference we keep)."""
    x = inputs("batch_norm-train", batch=3)
    rm, rv = torch.zeros(4, 3, dtype=D), torch.ones(4, 3, dtype=D)
    vmap(lambda x, a, b: bt.batch_norm(x, a, b, None, None, True, 0.5), in_dims=(0, 1, 1))(x, rm, rv)
    for i in range(3):
        em, ev = torch.zeros(4, dtype=D), torch.ones(4, dtype=D)
        F.batch_norm(x[i], em, ev, None, None, True, 0.5)
        close(rm[:, i], em)
        close(rv[:, i], ev)


def test_vmap_training_with_unbatched_running_stats_raises_as_torch():
    x = inputs("batch_norm-train", batch=3)
    rm, rv = torch.zeros(4, dtype=D), torch.ones(4, dtype=D)
    with pytest.raises(RuntimeError) as theirs:
        vmap(lambda x: F.batch_norm(x, rm, rv, training=True))(x)
    with pytest.raises(RuntimeError) as ours:
        vmap(lambda x: bt.batch_norm(x, rm, rv, training=True))(x)
    assert str(ours.value) == str(theirs.value)
    assert torch.equal(rm, torch.zeros(4, dtype=D)) and torch.equal(rv, torch.ones(4, dtype=D))
    RM = torch.zeros(3, 4, dtype=D)                         # one batched, the other not
    f = lambda m: lambda x, a: m.batch_norm(x, a, rv, training=True)
    with pytest.raises(RuntimeError) as theirs:
        vmap(f(F))(x, RM)
    with pytest.raises(RuntimeError) as ours:
        vmap(f(bt))(x, RM)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("cls, theirs_cls", [(bt.BatchNorm1d, torch.nn.BatchNorm1d),
                                             (bt.GroupNorm, torch.nn.GroupNorm),
                                             (bt.InstanceNorm1d, torch.nn.InstanceNorm1d),
                                             (bt.LayerNorm, torch.nn.LayerNorm)])
@pytest.mark.parametrize("training", [True, False])
def test_modules_under_vmap_and_replace_all_batch_norm_modules(cls, theirs_cls, training):
    args = {bt.GroupNorm: (2, 4), bt.LayerNorm: ((4, 3),)}.get(cls, (4,))
    kw = {"affine": True} if cls is bt.InstanceNorm1d else {}
    ours, theirs = cls(*args, dtype=D, **kw), theirs_cls(*args, dtype=D, **kw)
    theirs.load_state_dict(ours.state_dict())
    if cls is bt.BatchNorm1d:
        for m in (ours, theirs):
            m.running_mean.copy_(RM), m.running_var.copy_(RV)
            if training:
                torch.func.replace_all_batch_norm_modules_(m)
    ours.train(training), theirs.train(training)
    x = inputs("batch_norm-train", batch=3)
    close(vmap(ours)(x), vmap(theirs)(x))
    params = dict(ours.named_parameters())
    g = lambda m: grad(lambda p, x: (torch.func.functional_call(m, p, (x,)) ** 3).sum())
    for k, v in g(ours)(params, x[0]).items():
        close(v, g(theirs)(dict(theirs.named_parameters()), x[0])[k], what=k)


# ----------------------------------------------------------------------------- unsupported


def test_batch_renorm_and_sync_batch_norm_refuse_vmap_clearly():
    x = inputs("batch_norm-train", batch=3)
    rm, rs = torch.zeros(4, dtype=D), torch.ones(4, dtype=D)
    with pytest.raises(NotImplementedError, match="does not support torch.func.vmap"):
        vmap(lambda x: bt.batch_renorm(x, rm, rs, training=True))(x)
    assert torch.equal(rm, torch.zeros(4, dtype=D))
    with pytest.raises(NotImplementedError, match="does not support torch.func.vmap"):
        vmap(lambda x: bt.sync_batch_norm(x, None, None))(x)


def test_batch_renorm_grad_and_forward_ad():
    """Batch renorm: grad and forward mode (r and d constants) against a float64 autograd
    reference x̂ = (x − μ_B)/σ_B·r + d."""
    x = inputs("batch_norm-train")
    rm, rs = torch.zeros(4, dtype=D) + 3, torch.ones(4, dtype=D) * 1.5

    def reference(x):
        dims = (0, 2)
        mu = x.mean(dims, keepdim=True)
        sd = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + 1e-5)
        r = torch.clamp(sd.detach() / rs.view(1, -1, 1), 1 / 3, 3)
        d = torch.clamp((mu.detach() - rm.view(1, -1, 1)) / rs.view(1, -1, 1), -5, 5)
        return ((x - mu) / sd * r + d) * W.view(1, -1, 1) + B.view(1, -1, 1)

    ours = lambda x: bt.batch_renorm(x, rm.clone(), rs.clone(), W, B, True)
    close(grad(loss(ours))(x), grad(loss(reference))(x))
    t = torch.randn(x.shape, generator=_g(16), dtype=D)
    close(jvp(ours, (x,), (t,))[1], jvp(reference, (x,), (t,))[1])


@pytest.mark.parametrize("name", ["batch_norm-train", "batch_norm-eval", "layer_norm", "group_norm",
                                  "instance_norm-train", "rms_norm"])
def test_nested_vmap(name):
    ours, theirs = pair(name)
    x = inputs(name, batch=6).unflatten(0, (2, 3))
    close(vmap(vmap(ours))(x), vmap(vmap(theirs))(x))
    close(vmap(vmap(grad(loss(ours))))(x), vmap(vmap(grad(loss(theirs))))(x))


def test_vmap_eval_with_batched_running_stats():
    x = inputs("batch_norm-eval", batch=3)
    rm = torch.randn(3, 4, generator=_g(17), dtype=D)
    rv = torch.rand(3, 4, generator=_g(18), dtype=D) + 0.5
    f = lambda m: lambda x, a, b: m.batch_norm(x, a, b, W, B, False)
    close(vmap(f(bt))(x, rm, rv), vmap(f(F))(x, rm, rv))
    close(vmap(f(bt), in_dims=(None, 0, 0))(x[0], rm, rv), vmap(f(F), in_dims=(None, 0, 0))(x[0], rm, rv))


@pytest.mark.parametrize("name", NAMES)
def test_hessian(name):
    """jacfwd(jacrev): forward mode through the (differentiable) backward."""
    ours, theirs = pair(name)
    x = inputs(name)
    close(torch.func.hessian(loss(ours))(x), torch.func.hessian(loss(theirs))(x))
