"""bncourse.labs with torch: learners written in torch (converted with .numpy()) pass or get
their mistake named; every check_fold test (its reference is bncourse.torch.fold_bn_into)."""

from conftest import optional
import pytest

torch = optional("torch")

import labs_solutions as S  # noqa: E402

from bncourse import labs  # noqa: E402
from bncourse.course.labs import catalogue  # noqa: E402
from bncourse.course.tolerance import normwise_error  # noqa: E402


def _dims(x):
    return (0,) + tuple(range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _denominator(var, eps, mistake):
    if mistake == "eps_outside_sqrt":
        return var.sqrt() + eps
    if mistake == "missing_eps":
        return var.sqrt()
    if mistake == "divide_by_variance":
        return var + eps
    return (var + eps).sqrt()


def fwd_torch(x, gamma, beta, eps, mistake=None):
    """wrong_axes here: statistics over dim 0 only (per feature position)."""
    x, g, b = (torch.from_numpy(a) for a in (x, gamma, beta))
    dims = (0,) if mistake == "wrong_axes" else _dims(x)
    mu = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=mistake == "unbiased_variance")
    if mistake == "gamma_beta_swapped":
        g, b = b, g
    if mistake == "missing_affine":
        g, b = torch.ones_like(g), torch.zeros_like(b)
    return (_view(g, x) * (x - mu) / _denominator(var, eps, mistake) + _view(b, x)).numpy()


def bwd_torch(dy, x, gamma, eps, mistake=None):
    """Autograd through the forward; a mistake detaches what it forgets."""
    x = torch.from_numpy(x).requires_grad_()
    g = torch.from_numpy(gamma).requires_grad_()
    dims = tuple(range(1, x.ndim)) if mistake == "wrong_axes" else _dims(x)
    mu = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=mistake == "unbiased_variance")
    if mistake in ("stats_treated_constant", "missing_mean_term"):
        mu = mu.detach()
    if mistake in ("stats_treated_constant", "missing_xhat_term"):
        var = var.detach()
    y = _view(g, x) * (x - mu) / (var + eps).sqrt()
    y.backward(torch.from_numpy(dy))
    dbeta = dy.sum(axis=_dims(x))
    dgamma = dbeta if mistake == "dgamma_missing_xhat" else g.grad.numpy()
    if mistake == "params_averaged":
        count = x.numel() // x.shape[1]
        return x.grad.numpy(), dgamma / count, dbeta / count
    return x.grad.numpy(), dgamma, dbeta


def run_torch(running_mean, running_var, x, momentum, mistake=None):
    rm, rv, x = (torch.from_numpy(a) for a in (running_mean, running_var, x))
    f = 1 - momentum if mistake == "momentum_inverted" else momentum
    var = x.var(dim=_dims(x), unbiased=mistake != "biased_running_var")
    return torch.lerp(rm, x.mean(dim=_dims(x)), f).numpy(), torch.lerp(rv, var, f).numpy()


def inf_torch(x, running_mean, running_var, gamma, beta, eps, mistake=None):
    x, rm, rv, g, b = (torch.from_numpy(a) for a in (x, running_mean, running_var, gamma, beta))
    if mistake == "uses_batch_stats":
        rm, rv = x.mean(dim=_dims(x)), x.var(dim=_dims(x), unbiased=False)
    y = (x - _view(rm, x)) / _denominator(_view(rv, x), eps, mistake)
    if mistake == "gamma_beta_swapped":
        g, b = b, g
    return (_view(g, x) * y + _view(b, x)).numpy()


def ln_torch(x, gamma, beta, eps, mistake=None):
    x, g, b = (torch.from_numpy(a) for a in (x, gamma, beta))
    dims = (-1,) if mistake == "wrong_axes" else tuple(range(1, x.ndim))
    mu = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=mistake == "unbiased_variance")
    if mistake == "gamma_beta_swapped":
        g, b = b, g
    xhat = (x - mu) / _denominator(var, eps, mistake)
    return (xhat if mistake == "missing_affine" else g * xhat + b).numpy()


def gn_torch(x, num_groups, gamma, beta, eps, mistake=None):
    x, g, b = (torch.from_numpy(a) for a in (x, gamma, beta))
    N, C = x.shape[:2]
    if mistake == "groups_interleaved":
        xg = x.reshape(N, C // num_groups, num_groups, -1).transpose(1, 2)
    else:
        xg = x.reshape(N, C if mistake == "wrong_axes" else num_groups, 1, -1)   # wrong: per channel
    mu = xg.mean(dim=(2, 3), keepdim=True)
    var = xg.var(dim=(2, 3), keepdim=True, unbiased=mistake == "unbiased_variance")
    xhat = (xg - mu) / _denominator(var, eps, mistake)
    if mistake == "groups_interleaved":
        xhat = xhat.transpose(1, 2)
    if mistake == "missing_affine":
        return xhat.reshape(x.shape).numpy()
    return (_view(g, x) * xhat.reshape(x.shape) + _view(b, x)).numpy()


def fwd_torch_float32(x, gamma, beta, eps):
    """Correct, in float32 (the tolerance lets float32 work pass)."""
    y = torch.nn.functional.batch_norm(torch.from_numpy(x).float(), None, None,
                                       torch.from_numpy(gamma).float(), torch.from_numpy(beta).float(),
                                       training=True, eps=eps)
    return y.numpy()


def fold_torch(W, b, gamma, beta, running_mean, running_var, eps):
    """Correct, with torch.nn.utils.fusion (torch's own folding)."""
    from torch.nn.utils.fusion import fuse_linear_bn_weights
    t = [None if a is None else torch.from_numpy(a) for a in (W, b, running_mean, running_var, gamma, beta)]
    Wf, bf = fuse_linear_bn_weights(t[0], t[1], t[2], t[3], eps, t[4], t[5])
    return Wf.detach().numpy(), bf.detach().numpy()


TORCH_STYLES = {"check_batch_norm_forward": fwd_torch, "check_batch_norm_backward": bwd_torch,
                "check_running_stats": run_torch, "check_batch_norm_inference": inf_torch,
                "check_layer_norm_forward": ln_torch, "check_group_norm_forward": gn_torch}


@pytest.mark.parametrize("name,fn", [(n, f) for n, f in TORCH_STYLES.items()]
                         + [("check_batch_norm_forward", fwd_torch_float32),
                            ("check_fold", fold_torch), ("check_fold", S.fold_np),
                            ("check_fold", S.fold_loops)], ids=lambda v: getattr(v, "__name__", v))
def test_correct_torch_style_and_fold_implementations_pass(name, fn):
    r = getattr(labs, name)(fn)
    assert r.passed and r.mistake is None, r


CASES = ([(n, m, f) for n, f in TORCH_STYLES.items() for m in labs.CATALOGUE[n]]
         + [("check_fold", m, f) for m in labs.CATALOGUE["check_fold"] for f in S.STYLES["check_fold"]])


@pytest.mark.parametrize("name,mistake,fn", CASES, ids=lambda v: getattr(v, "__name__", v))
def test_each_mistake_is_named_in_torch_style_and_for_fold(name, mistake, fn):
    r = getattr(labs, name)(S.with_mistake(fn, mistake))
    assert not r.passed and r.mistake == mistake, r


def test_fold_switchable_default_and_distinguishable_mistakes():
    spec = catalogue.SPECS["check_fold"]
    for p in spec.probes:
        for a, e in zip(catalogue.DEFAULTS["check_fold"](*p.args), spec.reference(*p.args)):
            assert normwise_error(a, e) <= 1e-12
    cands = [("correct", spec.reference)] + [(m, v) for m, vs in spec.catalogue.items() for v in vs]
    outs = [(m, [f(*p.args) for p in spec.probes]) for m, f in cands]
    for i, (ma, a) in enumerate(outs):
        for mb, b in outs[i + 1:]:
            assert max(normwise_error(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb)) > 1e-2, (ma, mb)
    assert any(p.args[1] is None for p in spec.probes) and any(p.args[1] is not None for p in spec.probes)


def test_a_torch_tensor_may_be_returned_unconverted():
    r = labs.check_batch_norm_forward(lambda x, g, b, eps: torch.from_numpy(S.fwd_np(x, g, b, eps)))
    assert r.passed, r


def test_tensor_that_requires_grad_is_reported_not_raised():
    r = labs.check_batch_norm_forward(lambda x, g, b, eps: torch.from_numpy(x).requires_grad_())
    assert not r.passed and "y cannot be read with np.asarray: RuntimeError" in r.message


def test_fold_unknown_error_localizes_the_row():
    def wrong_row(*args):
        W, b = S.fold_np(*args)
        W = W.copy()
        W[0, 0] += 1.0
        return W, b

    r = labs.check_fold(wrong_row)
    assert r.mistake is None and "W_folded: largest error 1 at index (0, 0) (channel 0)" in r.message
    assert "b_folded: correct" in r.message
