"""bncourse.labs: the checkers pass correct learner code in any style, name each catalogued
mistake, localize unknown errors, and report bad learner code without raising.

Learner-style implementations are in labs_solutions.py (NumPy) and test_labs_torch.py
(torch; also every check_fold test, whose reference needs torch)."""

import itertools
import os
import re

import labs_solutions as S
import numpy as np
import pytest

from bncourse import labs
from bncourse.course.labs import catalogue
from bncourse.course.labs.result import RTOL, _short_filename
from bncourse.course.tolerance import normwise_error

NUMPY_CHECKS = [name for name in catalogue.SPECS if name != "check_fold"]
REQUIRED = {
    "check_batch_norm_forward": {"unbiased_variance", "eps_outside_sqrt", "missing_eps",
                                 "divide_by_variance", "wrong_axes", "gamma_beta_swapped"},
    "check_batch_norm_backward": {"stats_treated_constant", "missing_mean_term", "missing_xhat_term",
                                  "dgamma_missing_xhat", "unbiased_variance", "wrong_axes"},
    "check_running_stats": {"momentum_inverted", "biased_running_var"},
    "check_batch_norm_inference": {"uses_batch_stats", "eps_outside_sqrt"},
    "check_fold": {"missing_bias"},
    "check_merge": {"naive_m2"},
}


def _f64(outs):
    return [np.asarray(v, dtype=np.float64) for v in outs]


# ----------------------------------------------------------------------------- the catalogue itself


def test_catalogue_covers_the_required_mistakes_and_describes_each():
    assert set(labs.CATALOGUE) == set(catalogue.SPECS)
    for name, ids in REQUIRED.items():
        assert ids <= set(labs.CATALOGUE[name]), name
    used = {m for ids in labs.CATALOGUE.values() for m in ids}
    assert used == set(labs.MISTAKES)
    assert all(isinstance(d, str) and "\n" not in d for d in labs.MISTAKES.values())


@pytest.mark.parametrize("name", NUMPY_CHECKS)
def test_switchable_default_is_the_public_reference(name):
    """The one parameterised implementation of the mistakes is correct with default switches."""
    spec = catalogue.SPECS[name]
    for p in spec.probes:
        for a, e in zip(_f64(catalogue.DEFAULTS[name](*p.args)), _f64(spec.reference(*p.args))):
            assert normwise_error(a, e) <= 1e-12


@pytest.mark.parametrize("name", NUMPY_CHECKS)
def test_mistakes_are_pairwise_distinguishable_on_the_probes(name):
    """Every variant differs from the correct answer and from every other mistake's variants
    on some probe by far more than the pass tolerance."""
    spec = catalogue.SPECS[name]
    cands = [("correct", spec.reference)] + [(m, v) for m, vs in spec.catalogue.items() for v in vs]
    outs = [(m, [_f64(f(*p.args)) for p in spec.probes]) for m, f in cands]
    for (ma, a), (mb, b) in itertools.combinations(outs, 2):
        if ma == mb:
            continue
        sep = max(normwise_error(x, y) if x.shape == y.shape else np.inf
                  for pa, pb in zip(a, b) for x, y in zip(pa, pb))
        assert sep > 100 * RTOL, (ma, mb, sep)


def test_probes_have_2d_and_4d_inputs_several_batch_sizes_and_small_variances():
    spec = catalogue.SPECS["check_batch_norm_forward"]
    xs = [p.args[0] for p in spec.probes]
    assert {x.ndim for x in xs} == {2, 4}
    assert len({x.shape[0] for x in xs}) >= 3
    for p in spec.probes:
        x, eps = p.args[0], p.args[3]
        assert x.var(axis=catalogue.AXES["batch"](x.ndim)).min() < 10 * eps      # eps matters


@pytest.mark.parametrize("name", list(catalogue.SPECS))
def test_probes_come_smallest_first(name):
    """The first failing probe is "the smallest probe that shows it"."""
    probes = catalogue.SPECS[name].probes
    sizes = [max(np.size(a) for a in p.args if isinstance(a, np.ndarray)) for p in probes]   # the input's
    assert sizes == sorted(sizes)


# ----------------------------------------------------------------------------- learners


@pytest.mark.parametrize("name,fn", [(n, f) for n, fs in S.CORRECT.items() if n != "check_fold"
                                     for f in fs], ids=lambda v: getattr(v, "__name__", v))
def test_correct_implementations_pass(name, fn):
    r = getattr(labs, name)(fn)
    assert r.passed and r.mistake is None, r
    assert r.message.startswith("matches the reference on all")


CASES = [(n, m, f) for n in NUMPY_CHECKS for m in labs.CATALOGUE[n] for f in S.STYLES[n]]


@pytest.mark.parametrize("name,mistake,fn", CASES, ids=lambda v: getattr(v, "__name__", v))
def test_each_mistake_is_named_in_two_styles(name, mistake, fn):
    r = getattr(labs, name)(S.with_mistake(fn, mistake))
    assert not r.passed and r.mistake == mistake, r
    assert f"[{mistake}]" in r.message and "where to look:" in r.message
    assert "smallest probe that shows it: x of shape" in r.message or name == "check_merge"


def test_unknown_error_is_localized_forward():
    def off_in_one_channel(x, gamma, beta, eps):
        y = S.fwd_np(x, gamma, beta, eps)
        if x.ndim == 4:
            y[:, 1] += 0.5                      # wrong only on 4-D inputs, channel 1
        return y

    r = labs.check_batch_norm_forward(off_in_one_channel)
    assert not r.passed and r.mistake is None
    assert "matches no catalogued mistake" in r.message
    assert "smallest probe that shows it: x of shape (3, 2, 2, 3), eps=0.01" in r.message
    assert "y: largest error 0.5 at index (0, 1, 0, 0) (channel 1)" in r.message
    assert "wrong channels: 1 of 2" in r.message


def test_unknown_error_is_localized_backward():
    def dbeta_doubled(dy, x, gamma, eps):
        dx, dgamma, dbeta = S.bwd_np(dy, x, gamma, eps)
        return dx, dgamma, 2 * dbeta

    r = labs.check_batch_norm_backward(dbeta_doubled)
    assert r.mistake is None and not r.passed
    assert "  dx: correct\n  dgamma: correct\n  dbeta: largest error" in r.message


def test_merge_learner_may_return_numpy_ints():
    r = labs.check_merge(lambda *a: (np.int64(a[0] + a[3]),) + S.merge_np(*a)[1:])
    assert r.passed, r


# ----------------------------------------------------------------------------- bad learner code


def _assert_no_machine_paths(message):
    assert os.sep + "work" not in message and "site-packages" not in message
    assert not re.search(r'File "/', message)


def test_raising_function_shows_the_learners_traceback():
    def helper(x):
        return x.mean(axis=7)                   # raises inside NumPy

    def my_bn(x, gamma, beta, eps):
        return helper(x)

    r = labs.check_batch_norm_forward(my_bn)
    assert not r.passed and r.mistake is None
    assert "your function raised an error on probe x of shape (4, 3), eps=0.001" in r.message
    assert 'File "test_labs.py"' in r.message and "in my_bn" in r.message and "in helper" in r.message
    assert "return x.mean(axis=7)" in r.message and "AxisError" in r.message
    assert "fromnumeric" not in r.message and "bncourse" not in r.message
    _assert_no_machine_paths(r.message)


@pytest.mark.parametrize("ret,text", [
    (lambda x: x[:, :1], "y has shape (4, 1); expected (4, 3)"),
    (lambda x: x.tolist(), "y is a list; return an array"),
    (lambda x: None, "y is a NoneType; return an array"),
    (lambda x: (x, None), "returned a tuple of 2 items; expected one array y"),
    (lambda x: x.astype(complex) * 1j, "y has dtype complex128; return real numbers"),
    (lambda x: x.astype(object), "y has dtype object; return real numbers"),
])
def test_wrong_shape_or_type_fails_with_a_message(ret, text):
    def my_bn(x, gamma, beta, eps):
        return ret(x)

    r = labs.check_batch_norm_forward(my_bn)
    assert not r.passed and r.mistake is None and text in r.message, r
    line = my_bn.__code__.co_firstlineno
    assert r.message.endswith(f"your function: my_bn (test_labs.py, line {line}), "
                              "on probe x of shape (4, 3), eps=0.001")
    _assert_no_machine_paths(r.message)


def test_failure_on_a_4d_probe_only_names_that_probe():
    def flat_only(x, gamma, beta, eps):
        if x.ndim > 2:
            raise NotImplementedError("only (N, C) inputs")
        return S.fwd_np(x, gamma, beta, eps)

    r = labs.check_batch_norm_forward(flat_only)
    assert "raised an error on probe x of shape (3, 2, 2, 3), eps=0.01" in r.message
    assert r.message.endswith('raise NotImplementedError("only (N, C) inputs")\n'
                              "NotImplementedError: only (N, C) inputs")


def test_non_finite_outputs_fail_and_are_located():
    def nan_in_last_channel(x, gamma, beta, eps):
        y = S.fwd_np(x, gamma, beta, eps)
        y[:, -1] = np.nan
        return y

    r = labs.check_batch_norm_forward(nan_in_last_channel)
    assert not r.passed and r.mistake is None
    assert "y: not finite (nan or inf) at index (0, 2) (channel 2)" in r.message


def test_wrong_tuple_length_fails():
    r = labs.check_running_stats(lambda rm, rv, x, m: rm)
    assert not r.passed and "returned a ndarray; expected a tuple (running_mean, running_var)" in r.message
    r = labs.check_batch_norm_backward(lambda dy, x, g, eps: (dy, g))
    assert "a tuple of 2 items; expected a tuple (dx, dgamma, dbeta)" in r.message


@pytest.mark.parametrize("check", [getattr(labs, n) for n in catalogue.SPECS])
def test_non_callable_raises_type_error(check):
    with pytest.raises(TypeError, match="expects your function fn"):
        check(np.zeros(3))


def test_cell_file_names_are_reduced():
    assert _short_filename("/tmp/ipykernel_1234/2345678.py") == "<cell>"
    assert _short_filename("<ipython-input-3-abc>") == "<cell>"
    assert _short_filename("/home/me/project/my_bn.py") == "my_bn.py"


# ----------------------------------------------------------------------------- display


def test_repr_and_html_are_deterministic():
    wrong = S.with_mistake(S.fwd_np, "missing_eps")
    a, b = labs.check_batch_norm_forward(wrong), labs.check_batch_norm_forward(wrong)
    assert repr(a) == repr(b) and a._repr_html_() == b._repr_html_()
    assert repr(a).startswith("check_batch_norm_forward: failed (missing_eps)\nlikely mistake [missing_eps]")
    assert a._repr_html_().startswith('<div style="border:1px solid #b71c1c;background:#ffebee;')
    ok = labs.check_batch_norm_forward(S.fwd_np)
    assert repr(ok).startswith("check_batch_norm_forward: passed\n")
    assert ok._repr_html_() == (
        '<div style="border:1px solid #1b5e20;background:#e8f5e9;color:#1b5e20;padding:6px 10px;'
        'border-radius:4px;font-family:sans-serif"><b>&#10004; check_batch_norm_forward: passed</b>'
        '<pre style="margin:4px 0 0;white-space:pre-wrap;color:#212121;background:transparent">'
        f"{ok.message}</pre></div>")


def test_numbers_in_messages_have_two_significant_digits():
    r = labs.check_batch_norm_forward(S.with_mistake(S.fwd_np, "unbiased_variance"))
    for number in re.findall(r"(?:error|expected|got) (-?[0-9.e+-]+)", r.message):
        assert len(re.sub(r"e.*|[-.]|^0+", "", number).lstrip("0")) <= 2, number


def test_a_notebook_cell_is_named_cell_in_tracebacks_and_locations():
    src = "def cell_bn(x, gamma, beta, eps):\n    return undefined_helper(x)\n"
    namespace = {}
    exec(compile(src, "/tmp/ipykernel_4242/1234567.py", "exec"), namespace)
    r = labs.check_batch_norm_forward(namespace["cell_bn"])
    assert 'File "<cell>", line 2, in cell_bn' in r.message and "NameError" in r.message
    _assert_no_machine_paths(r.message)
    exec(compile("def cell_bn(x, gamma, beta, eps):\n    return x[0]\n", "/tmp/ipykernel_4242/7.py",
                 "exec"), namespace)
    r = labs.check_batch_norm_forward(namespace["cell_bn"])
    assert "your function: cell_bn (<cell>, line 1)" in r.message
