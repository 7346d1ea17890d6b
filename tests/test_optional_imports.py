"""A missing optional library is an ImportError that names the extra bringing it.

Each case runs in a fresh interpreter with ``sys.modules[name] = None``, which makes
``import name`` fail as if the library were not installed.
"""

import subprocess
import sys

import pytest

CASES = {
    "torch": ("import bncourse.torch",
              'bncourse.torch needs PyTorch: pip install "bncourse[torch]"'),
    "cupy": ("import numpy, bncourse.cupy as b; b.batch_norm_forward(numpy.ones((4, 3)))",
             'pip install "bncourse[gpu]"'),
}


@pytest.mark.parametrize("missing", sorted(CASES))
def test_a_missing_library_names_its_extra(missing):
    statement, message = CASES[missing]
    code = (f"import sys; sys.modules[{missing!r}] = None\n"
            "try:\n"
            f"    {statement}\n"
            "except ImportError as exc:\n"
            "    cause = exc.__cause__\n"
            "    print(type(exc).__name__, '|', exc, '|', type(cause).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kind, text, cause = (part.strip() for part in out.stdout.split("|"))
    assert kind == "ImportError" and message in text
    assert cause == "ModuleNotFoundError"  # chained from the original failure


def test_import_bncourse_needs_numpy_alone():
    code = ("import sys; sys.modules['torch'] = sys.modules['cupy'] = None\n"
            "sys.modules['array_api_compat'] = None\n"
            "import bncourse, bncourse.numpy, bncourse.cupy, bncourse.figure1\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
