#!/usr/bin/env bash
# The GPU check (issue 11): every GPU test and the GPU benchmark, in one run, through the
# public entry points (pytest -m gpu, python3 -m bncourse.bench --backend cupy).
#
#   bash tools/gpu_check.sh                    # results under $OUT, or ./gpu_results if unset
#   OUT=/tmp/gpu bash tools/gpu_check.sh       # anywhere else
#
# Steps, each under `timeout`, none stopping the others (about 8 minutes at most in all):
#   env         nvidia-smi, Python/NumPy/torch/CuPy versions, torch.cuda.is_available(),
#               bncourse.cupy.is_available(); installs array-api-compat from .whl/ if it is
#               missing and a wheel was carried (below).  Fails without a usable GPU.
#   pytest_gpu  python3 -m pytest -m gpu over the test files that hold gpu-marked tests
#               (-o addopts='': the GPU machine may lack nbval); junit XML and log.
#   bench       python3 -m bncourse.bench --backend cupy: forward, backward and
#               forward+backward of the fused kernels, the generic path and torch's CUDA
#               batch norm against a device-to-device copy, float16 and float32, inputs from
#               1 MB to 512 MB (float32) / 256 MB (float16); writes <gpu-name>.json.
# $OUT/summary.txt gets one line per step, `<step> rc=<exit code> seconds=<s> ok|FAILED|TIMEOUT`,
# then `overall ok|FAILED`; the script exits 1 if any step failed.  Files in $OUT (6, within
# the device tool's 8): summary.txt env.log pytest_gpu.log pytest_gpu.xml bench.log <gpu>.json.
#
# On the device machine (the `run` tool of this workplace; it sets OUT and brings $OUT back):
#   run(command="bash tools/gpu_check.sh", timeout_s=570)
# Its image has torch, CuPy, pytest and hypothesis but (as last listed) not array-api-compat,
# which bncourse.core.closed_form needs for CuPy arrays.  Carry it as a wheel, prepared here first
# (.whl/ and gpu_results/ are in .gitignore):
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl array-api-compat==1.16.0
#   run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=570)
# (carry nothing if `python3 -c "import array_api_compat"` works there).
#
# With the results: read summary.txt and pytest_gpu.log; fix what failed.  Copy the
# benchmark's <gpu-name>.json unedited into benchmarks/results/ and commit it: chapter 14
# (book/14_performance.ipynb) plots every file there with bncourse.paper.plots.gpu_results_figure
# (regenerate its outputs with tools/run_notebooks.py); then replace the "never run on a GPU"
# statements of README.md and benchmarks/README.md by what was measured.
#
# Knobs: GPU_CHECK_QUICK=1 (small bench, for testing this script without a GPU; its JSON is
# not a result to keep), PYTHON (default python3), GPU_CHECK_WHEELS (default .whl),
# GPU_CHECK_TIMEOUT_{ENV,PYTEST,BENCH} (seconds; default 60, 210, 210).

set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PYTHON=${PYTHON:-python3}
QUICK=${GPU_CHECK_QUICK:-0}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"     # this checkout's bncourse, installed or not
export PYTHONUNBUFFERED=1
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILED=0

# run_step NAME SECONDS COMMAND...: run it under timeout, output to stdout and $OUT/NAME.log,
# one line in the summary.
run_step() {
    local name=$1 limit=$2 start rc status
    shift 2
    echo "=== $name (at most ${limit}s): $*"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    cat "$OUT/$name.log"
    if [ "$rc" -eq 0 ]; then status=ok
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=TIMEOUT
    else status=FAILED
    fi
    [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
    echo "$name rc=$rc seconds=$(($(date +%s) - start)) $status" >>"$SUMMARY"
    echo "=== $name: $status (rc=$rc)"
}

env_step() {
    echo "bncourse checkout: $(git rev-parse HEAD 2>/dev/null || echo 'not a git checkout')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi
    else
        echo "nvidia-smi: not found"
    fi
    if ! "$PYTHON" -c "import array_api_compat" 2>/dev/null; then
        if ls "$WHEELS"/array_api_compat-*.whl >/dev/null 2>&1; then
            echo "array-api-compat missing: installing the carried wheel from $WHEELS"
            "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target /tmp/bncourse_gpu_site "$WHEELS"/array_api_compat-*.whl || return 1
        fi
    fi
    "$PYTHON" - <<'EOF'
import platform
import sys

print(f"python {platform.python_version()} ({sys.executable})")
versions = {}
for name in ("numpy", "torch", "cupy", "array_api_compat", "pytest", "hypothesis"):
    try:
        versions[name] = __import__(name).__version__
    except Exception as exc:                       # noqa: BLE001 - report, do not stop
        versions[name] = f"NOT IMPORTABLE ({type(exc).__name__}: {exc})"
    print(f"{name} {versions[name]}")
import bncourse.cupy as bcp

torch_cuda = False
if "NOT" not in versions["torch"]:
    import torch
    torch_cuda = torch.cuda.is_available()
    print(f"torch.cuda.is_available() {torch_cuda}; torch.version.cuda {torch.version.cuda}")
    if torch_cuda:
        print(f"torch device: {torch.cuda.get_device_name(0)}")
print(f"bncourse.cupy.is_available() {bcp.is_available()}")
if not bcp.is_available():
    print(f"bncourse.cupy: {bcp.unavailable_error()}")
missing = [n for n, v in versions.items() if v.startswith("NOT")]
if missing or not torch_cuda or not bcp.is_available():
    sys.exit(f"not a usable GPU machine: missing {missing}, torch CUDA {torch_cuda}, "
             f"bncourse.cupy {bcp.is_available()}")
EOF
}

if [ -d /tmp/bncourse_gpu_site ] || ! "$PYTHON" -c "import array_api_compat" 2>/dev/null; then
    export PYTHONPATH="$PYTHONPATH:/tmp/bncourse_gpu_site"   # where env_step puts the wheel
fi
export PYTHON WHEELS
export -f env_step                      # timeout runs commands, not functions: bash -c
run_step env "${GPU_CHECK_TIMEOUT_ENV:-60}" bash -c env_step

# every test file with gpu-marked tests; -m gpu runs only those tests
mapfile -t GPU_TESTS < <(grep -l "pytest.mark.gpu" tests/test_*.py)
run_step pytest_gpu "${GPU_CHECK_TIMEOUT_PYTEST:-210}" "$PYTHON" -m pytest -m gpu -o addopts='' \
    -p no:cacheprovider -rs --junitxml="$OUT/pytest_gpu.xml" "${GPU_TESTS[@]}"
# the counts, from the junit XML: all skipped means nothing ran on a GPU
"$PYTHON" - "$OUT/pytest_gpu.xml" >>"$SUMMARY" 2>/dev/null <<'EOF' || echo "pytest_gpu counts: no junit XML" >>"$SUMMARY"
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
print("pytest_gpu counts: " + " ".join(f"{k}={v}" for k, v in n.items()))
EOF

if [ "$QUICK" = 1 ]; then
    BENCH_ARGS=(--shapes 256x1024 --repeat 2)
else
    # 1 MB .. 512 MB of float32 (256 MB of float16): NCHW and 2-D, in and far beyond L2
    BENCH_ARGS=(--shapes 256x1024 32x64x56x56 256x256x14x14 32x64x112x112 65536x1024
                128x64x112x112 131072x1024 --repeat 20)
fi
run_step bench "${GPU_CHECK_TIMEOUT_BENCH:-210}" "$PYTHON" -m bncourse.bench --backend cupy \
    --dtypes float16 float32 "${BENCH_ARGS[@]}" --json "$OUT/"

if [ "$FAILED" -eq 0 ]; then
    echo "overall ok" >>"$SUMMARY"
else
    echo "overall FAILED ($FAILED step(s))" >>"$SUMMARY"
fi
echo "=== summary ($SUMMARY)"
cat "$SUMMARY"
[ "$FAILED" -eq 0 ]
