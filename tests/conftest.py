"""Shared test helpers: tolerances from the dtype, a normwise closeness check, optional
dependencies that skip with a reason (or fail, under BNCOURSE_STRICT=1 as in CI)."""

import os
import sys

from hypothesis import HealthCheck, settings
import numpy as np
import pytest

# Hypothesis: deterministic in CI (same examples every run), no per-example deadline.
settings.register_profile("bncourse", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bncourse")

# The one tolerance helper (bncourse.course.tolerance), shared with the notebooks.
from bncourse.course.tolerance import TOL, assert_close, max_err, tol  # noqa: E402, F401

STRICT = os.environ.get("BNCOURSE_STRICT") == "1"


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
