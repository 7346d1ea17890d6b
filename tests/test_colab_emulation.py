"""Every chapter of the Colab edition runs top to bottom from the installed wheel, alone in
an empty folder, with NumPy 2.0.2 (tools/colab_emulation.py); the unit tests pass there."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("colab_emulation", ROOT / "tools" / "colab_emulation.py")
emulation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(emulation)


def install_cell(line):
    return {"cells": [{"cell_type": "code", "source": ["import sys\n", line]}]}


@pytest.mark.parametrize("line, extras", [
    ('    %pip install -q "bncourse @ git+https://github.com/o/r@main"', ()),
    ('    %pip install -q "bncourse[torch] @ git+https://github.com/o/r@main"', ("torch",)),
    ('    %pip install -q "bncourse[torch,gpu] @ git+https://github.com/o/r@main"',
     ("gpu", "torch")),
])
def test_the_extras_come_from_the_install_cell(line, extras):
    assert emulation.notebook_extras(install_cell(line)) == extras


def test_a_notebook_without_the_install_cell_is_refused():
    with pytest.raises(ValueError, match="install cell"):
        emulation.notebook_extras(install_cell("import numpy"))


def test_the_environment_is_pinned_with_the_preinstalled_numpy():
    pins = dict(line.split("==") for line in emulation.emulation_constraints().split())
    assert pins["numpy"] == "2.0.2"
    assert pins["torch"] == emulation.pins()["torch"]  # the CPU build of constraints.txt
    for name in emulation.PREINSTALLED_FROM_CONSTRAINTS + emulation.RUNNER:
        assert name in pins


@pytest.mark.slow
def test_every_chapter_runs_alone_from_the_wheel():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "colab_emulation.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    passed = re.findall(r"^PASS (\S+): ", proc.stdout, re.M)
    assert sorted(passed) == sorted(p.name for p in (ROOT / "colab").glob("*.ipynb"))
    assert "unit tests against the installed wheel, NumPy 2.0.2" in proc.stdout


def test_each_install_cell_asks_for_the_extras_its_chapter_uses():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    regen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regen)
    import nbformat

    for path in regen.toc_notebooks(ROOT):
        nb = nbformat.read(path, as_version=4)
        edition = nbformat.read(ROOT / "colab" / path.name, as_version=4)
        uses_torch = any("import torch" in c.source or "bncourse.torch" in c.source
                         for c in nb.cells[1:] if c.cell_type == "code")
        assert regen.needed_extras(nb) == (["torch"] if uses_torch else []), path.name
        assert emulation.notebook_extras(edition) == tuple(regen.needed_extras(nb)), path.name
