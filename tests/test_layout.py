"""The package's layout promises: the public API is written as source, policy lives in one
place, the notebooks use public modules only, and the shared helpers behave."""

import inspect
import json
from pathlib import Path
import re

import numpy as np
import pytest

from bncourse.core import policy, running, validation
from bncourse.course import show_source
from bncourse.course.tolerance import TOL, assert_close, max_err, normwise_error, tol
import bncourse.cupy as bcp
import bncourse.numpy as bnp

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [bnp, bcp], ids=["numpy", "cupy"])
def test_every_public_name_has_source_in_its_backend_module(module):
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__module__ == module.__name__ or name.endswith("_num_threads"), name
            assert inspect.getsource(obj)


def test_numpy_layers_guard_their_array_type():
    layer = bnp.BatchNorm(3)
    with pytest.raises(TypeError, match="bncourse.numpy expects numpy.ndarray"):
        layer(np.ones((4, 3)).tolist())


def test_policy_constants_are_defined_once():
    pattern = re.compile(r"^\s*(KAPPA_MAX|SAMPLE|REFERENCE_SAMPLE\w*)\s*=", re.M)
    homes = [p.relative_to(ROOT).as_posix() for p in (ROOT / "bncourse").rglob("*.py")
             if pattern.search(p.read_text(encoding="utf-8"))]
    assert homes == ["bncourse/core/policy.py"]


def test_running_rule():
    assert running.momentum_weight(None, 0) == 1.0 and running.momentum_weight(None, 3) == 0.25
    assert running.momentum_weight(0.1, 7) == 0.1
    mean, var = running.running_stats(np.zeros(2), np.ones(2), np.full(2, 2.0), np.full(2, 1.0), 4, 0.5)
    np.testing.assert_array_equal(mean, [1.0, 1.0])
    np.testing.assert_array_equal(var, [0.5 + 0.5 * 4 / 3] * 2)


@pytest.mark.parametrize("eps, training, exc", [
    ("1e-5", True, TypeError), (None, False, TypeError), (float("nan"), False, ValueError),
    (0.0, True, ValueError), (-1.0, False, ValueError)])
def test_eps_contract(eps, training, exc):
    with pytest.raises(exc):
        validation.check_eps(eps, training)


def test_eps_zero_is_fine_in_eval():
    validation.check_eps(0.0, training=False)


def test_compute_dtype():
    assert policy.compute_dtype(np.float16) == np.float32
    assert policy.compute_dtype("float64") == np.float64


def test_tolerance_helper():
    assert tol(np.float32) == TOL["float32"] == tol("float32")
    assert tol(np.int64) == 0.0
    assert max_err(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == 0.5
    assert normwise_error(np.array([10.0]), np.array([20.0])) == 0.5
    assert_close(np.float32(1.0) + np.float32(1e-7), 1.0)
    with pytest.raises(AssertionError, match="y: max error"):
        assert_close(np.array([1.0]), np.array([1.1]), what="y")


def test_show_source_displays_public_objects():
    shown = show_source(bnp.BatchNorm)
    assert repr(shown).startswith("class BatchNorm(")
    pytest.importorskip("pygments")
    assert shown._repr_html_().startswith('<div class="highlight">')


def _code_cells():
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                yield path.name, "".join(cell["source"])


def test_notebooks_import_no_private_module_nor_assert_private_names():
    # a private module is a lowercase path segment with a leading underscore
    private = re.compile(r"\bbncourse(?:\.[a-z]\w*)*\._[a-z]\w*|from bncourse(?:\.\w+)* import .*\b_[a-z]\w*"
                         r"|FastCache")
    bad = [(name, m.group(0)) for name, src in _code_cells() for m in private.finditer(src)]
    assert not bad


def test_notebooks_paste_no_tolerance_helper():
    pasted = re.compile(r"^(TOL\s*=|def (assert_close|tol|max_err)\b)", re.M)
    assert not [name for name, src in _code_cells() if pasted.search(src)]
