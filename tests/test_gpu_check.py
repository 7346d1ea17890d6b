"""tools/gpu_check.sh as far as a machine without a GPU allows: it runs every step although
some fail, reports the GPU tests as skipped with their reason (never as passed), stops the
benchmark with its "needs a CUDA GPU" message, and exits non-zero."""

import os
from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import bncourse.cupy as bcp

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
NO_BASH = shutil.which("bash") is None or shutil.which("timeout") is None


def _has_gpu():
    try:
        import torch
    except ImportError:
        return bcp.is_available()
    return bcp.is_available() or torch.cuda.is_available()


@pytest.mark.skipif(NO_BASH, reason="needs bash and timeout (coreutils)")
def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    if NO_BASH:
        pytest.skip("needs bash and timeout (coreutils)")
    if _has_gpu():
        pytest.skip("a GPU is present: the check would run for real (run tools/gpu_check.sh itself)")
    out = tmp_path_factory.mktemp("gpu_results")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    env.update(OUT=str(out), GPU_CHECK_QUICK="1", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT)], check=False, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    summary = (out / "summary.txt").read_text().splitlines()
    steps = {line.split()[0]: line for line in summary if " rc=" in line}
    return proc, out, summary, steps


def test_every_step_runs_and_the_exit_status_says_failed(cpu_run):
    proc, _, summary, steps = cpu_run
    assert list(steps) == ["env", "pytest_gpu", "bench"], summary
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert steps["env"].split()[1] != "rc=0" and steps["env"].endswith("FAILED")
    assert summary[-1] == "overall FAILED (2 step(s))"
    assert "=== summary" in proc.stdout


def test_gpu_tests_are_reported_skipped_with_the_reason(cpu_run):
    _, out, summary, steps = cpu_run
    assert steps["pytest_gpu"].split()[1] == "rc=0"            # all skipped is not a failure...
    counts = next(line for line in summary if line.startswith("pytest_gpu counts:"))
    fields = dict(kv.split("=") for kv in counts.split(":")[1].split())
    assert int(fields["tests"]) > 90 and fields["passed"] == "0"     # ...but nothing passed
    assert fields["skipped"] == fields["tests"]
    cases = ET.parse(out / "pytest_gpu.xml").getroot().iter("testcase")
    reasons = {c.find("skipped").get("message") for c in cases}
    assert "CUDA not available: torch.cuda.is_available() is False" in reasons
    assert "CUDA not available: torch.cuda.is_available() is False" in (out / "pytest_gpu.log").read_text()


def test_benchmark_stops_with_a_message(cpu_run):
    _, out, _, steps = cpu_run
    assert steps["bench"].split()[1] == "rc=1" and steps["bench"].endswith("FAILED")
    log = (out / "bench.log").read_text()
    assert "needs a CUDA GPU" in log and "Traceback" not in log
    assert not list(out.glob("*.json"))                          # no results without a GPU
    assert "bncourse.cupy.is_available() False" in (out / "env.log").read_text()
