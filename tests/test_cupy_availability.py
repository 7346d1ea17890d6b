"""bncourse.cupy without CuPy or without a GPU: importing works, ``is_available()`` says so,
and every use raises an error that says what is missing.  These run on every machine: the
missing pieces are simulated where the machine has them."""

import subprocess
import sys
import types

import numpy as np
import pytest

import bncourse.cupy as bcp


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(bcp, "_cp", None)


@pytest.fixture
def no_device(monkeypatch):
    fake = types.SimpleNamespace(ndarray=type("ndarray", (), {}),
                                 cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setattr(bcp, "_cp", fake)


def test_import_works_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"      # makes `import cupy` fail
            "import bncourse.cupy as b\n"
            "assert b.is_available() is False\n"
            "assert isinstance(b.unavailable_error(), ImportError)\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_is_available_is_a_bool():
    assert bcp.is_available() in (True, False)
    assert (bcp.unavailable_error() is None) == bcp.is_available()


@pytest.mark.parametrize("missing, error, words", [
    ("no_cupy", ImportError, "CuPy is not installed"),
    ("no_device", RuntimeError, "no usable CUDA device"),
])
def test_functions_and_layers_say_what_is_missing(request, missing, error, words):
    request.getfixturevalue(missing)
    x = np.ones((4, 3), dtype=np.float32)
    calls = [lambda: bcp.batch_norm_forward(x), lambda: bcp.layer_norm_forward(x, 3),
             lambda: bcp.BatchNorm(3), lambda: bcp.GroupNorm(1, 3)]
    for call in calls:
        with pytest.raises(error, match=words):
            call()
    assert "bncourse.numpy" in str(bcp.unavailable_error())


def test_other_arrays_are_refused_when_the_gpu_is_there(monkeypatch):
    monkeypatch.setattr(bcp, "unavailable_error", lambda: None)
    with pytest.raises(TypeError, match="expects cupy.ndarray"):
        bcp.batch_norm_forward(np.ones((4, 3)))
