"""Shared test helpers: tolerances from the dtype, a normwise closeness check, optional
dependencies that skip with a reason (or fail, under BNCOURSE_STRICT=1 as in CI)."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: deterministic in CI (same examples every run), no per-example deadline.
settings.register_profile("bncourse", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bncourse")

# Normwise relative tolerance by dtype: |a − e|_max <= TOL · max(1, |e|_max).
#   float64: 1e-12 — agreement with PyTorch / float64 references (issue #2);
#   float32: 1e-5  — ~80 ulps: PyTorch's float32 kernel accumulates in float32;
#   float16: 2e-3  — two float16 ulps at |y| ~ 1: the output rounding itself.
TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}

STRICT = os.environ.get("BNCOURSE_STRICT") == "1"


def tol(dtype):
    return TOL[np.dtype(dtype).name]


def max_err(actual, expected):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    return float(np.max(np.abs(a - e))) if a.size else 0.0


def assert_close(actual, expected, dtype=None, *, rtol=None, what="value"):
    """Normwise check: max|a − e| <= rtol·max(1, max|e|), rtol from ``dtype`` by default."""
    rtol = tol(dtype if dtype is not None else np.asarray(actual).dtype) if rtol is None else rtol
    e = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
    err = max_err(actual, expected)
    assert np.all(np.isfinite(np.asarray(actual, dtype=np.float64))), f"{what}: non-finite values"
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:.1g} x {scale:.3g}"
    return err


def optional(module):
    """Import an optional dependency, or skip (fail under BNCOURSE_STRICT=1) with a reason.
    Usable at module level (skips the whole file)."""
    try:
        return __import__(module)
    except ImportError as exc:
        if STRICT:
            pytest.fail(f"{module} is required under BNCOURSE_STRICT=1: {exc}")
        pytest.skip(f"{module} is not installed", allow_module_level=True)


@pytest.fixture
def torch():
    t = optional("torch")
    t.manual_seed(0)
    return t


@pytest.fixture(autouse=True)
def _seed_torch():
    """Tests that draw from torch's global generator see the same numbers on every run."""
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


@pytest.fixture
def rng():
    return np.random.default_rng(20260101)
