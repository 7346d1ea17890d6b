"""Run every chapter as a learner's Colab runtime would: installed package, notebook alone.

    python tools/colab_emulation.py                  # all chapters of colab/, then the unit tests
    python tools/colab_emulation.py colab/05_backprop.ipynb --no-unit-tests
    python tools/colab_emulation.py --venv /tmp/colab-venv --keep   # reuse the environment

What it does, in order:

1. builds the wheel of the package from a copy of its sources (``pip wheel --no-deps``: the
   sdist contents, nothing else of the repository);
2. makes a fresh virtual environment (no ``PYTHONPATH``, no editable install) and installs
   what a hosted notebook service preinstalls, at pinned versions: NumPy 2.0.2 (what such
   services ship, the oldest NumPy ``pyproject.toml`` allows), and torch, matplotlib and
   ipykernel at the versions of ``constraints.txt`` (torch's CPU build: an unpinned torch
   pulls several GB), plus nbclient to run the notebooks;
3. for each notebook of the Colab edition (``colab/``, what the Colab buttons open), reads
   the extras its install cell names (``%pip install -q "bncourse[torch] @ git+..."``) and
   installs the wheel with exactly those extras, from the package registry, under the
   same pins. Chapters are run in order of their extras (none first), so a chapter never
   sees an extra that its own install cell does not ask for;
4. copies the notebook alone into an empty temporary folder and executes it there with
   nbclient (in a kernel of that environment), top to bottom; a final cell added by this
   script checks that the kernel imported ``bncourse`` from the wheel and NumPy 2.0.2;
5. runs the unit tests (``tests/``, without the book and notebook checks, which need the
   repository) in the same environment against the installed wheel.

Outputs are not compared with the stored ones as nbval would (exactly): the stored outputs
come from the NumPy of ``constraints.txt``, and a printed digit may differ under NumPy 2.0.2;
the cells' own asserts check every claim. Cells whose text output differs are reported.
Exits 1 if a chapter or a unit test fails; prints each chapter's run time.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv

ROOT = Path(__file__).resolve().parents[1]
COLAB_DIR = ROOT / "colab"

# What hosted notebook services ship; NumPy at the oldest version pyproject.toml allows.
PREINSTALLED = {"numpy": "2.0.2"}
PREINSTALLED_FROM_CONSTRAINTS = ["torch", "matplotlib", "ipykernel"]
RUNNER = ["nbclient"]  # runs the notebooks (Colab's own frontend plays this part)
UNIT_TEST_TOOLS = ["pytest", "pytest-xdist", "hypothesis"]
# Tests that read repository files (the book, the notebooks, the source tree, the tools and
# this tool's own checks) or compile CUDA kernels with CuPy: they have no meaning in an
# installed environment.
UNIT_TESTS_LEFT_OUT = ["test_book.py", "test_notebooks_hygiene.py", "test_cupy_kernels.py",
                       "test_colab_edition.py", "test_colab_emulation.py",
                       "test_make_colab.py", "test_deploy_workflow.py", "test_layout.py",
                       "test_gpu_check.py", "test_cli.py"]
SDIST_FILES = ["pyproject.toml", "README.md", "LICENSE", "bncourse"]

# The install line of a notebook's first cell, as tools/run_notebooks.py writes it.
INSTALL_RE = re.compile(r'%pip install -q "bncourse(?:\[(?P<extras>[\w,\s-]*)\])? @ git\+[^"]+"')

CHECK_CELL = """\
import json, sys, numpy, bncourse
print("EMULATION " + json.dumps({"bncourse": bncourse.__file__, "numpy": numpy.__version__,
                                 "prefix": sys.prefix}))"""


def log(message: str) -> None:
    print(message, flush=True)


def clean_env() -> dict:
    """The environment for every subprocess: no PYTHONPATH, no user site, quiet pip."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; its output is shown only if it fails (pip's notes are noise here)."""
    proc = subprocess.run([str(c) for c in cmd], env=clean_env(), capture_output=True,
                          text=True, **kwargs)
    if proc.returncode != 0:
        log(proc.stdout[-4000:] + proc.stderr[-4000:])
        proc.check_returncode()
    return proc


def pins(root: Path = ROOT) -> dict[str, str]:
    """``name -> version`` from ``constraints.txt``."""
    out = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[name.strip().lower()] = version.strip()
    return out


def emulation_constraints(root: Path = ROOT) -> str:
    """constraints.txt with NumPy replaced by the preinstalled version."""
    merged = pins(root) | PREINSTALLED
    return "".join(f"{name}=={version}\n" for name, version in sorted(merged.items()))


def notebook_extras(nb: dict) -> tuple[str, ...]:
    """The extras that the notebook's install cell asks for ('' for none)."""
    first = nb["cells"][0]
    source = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    match = INSTALL_RE.search(source)
    if first["cell_type"] != "code" or match is None:
        raise ValueError("the first cell is not the install cell of tools/run_notebooks.py")
    extras = match.group("extras") or ""
    return tuple(sorted(e.strip() for e in extras.split(",") if e.strip()))


def build_wheel(work: Path, root: Path = ROOT) -> Path:
    """The package's wheel, built from a copy of the sdist's files (no stale build/)."""
    src = work / "src"
    src.mkdir()
    for name in SDIST_FILES:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src])
    (wheel,) = dist.glob("bncourse-*.whl")
    return wheel


def make_venv(path: Path, constraints: Path, reuse: bool = False) -> Path:
    """A fresh environment with what hosted services preinstall; returns its python.
    ``reuse``: keep an environment made earlier at ``path`` (for development only)."""
    if reuse and (path / "bin" / "python").exists():
        python = path / "bin" / "python"
        run([python, "-m", "pip", "uninstall", "-q", "-y", "bncourse"])  # a new wheel, same version
        return python
    if path.exists():
        shutil.rmtree(path)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    python = path / "bin" / "python"
    have = pins()
    wanted = [f"{name}=={version}" for name, version in PREINSTALLED.items()]
    wanted += [f"{name}=={have[name]}" for name in PREINSTALLED_FROM_CONSTRAINTS]
    wanted += [f"{name}=={have[name]}" for name in RUNNER]
    log(f"preinstalled: {' '.join(wanted)}")
    run([python, "-m", "pip", "install", "-q", "-c", constraints, *wanted])
    return python


def pip_install(python: Path, constraints: Path, *requirements: str) -> None:
    run([python, "-m", "pip", "install", "-q", "-c", constraints, *requirements])


def installed(python: Path) -> str:
    """``pip freeze`` of the environment, for the log."""
    out = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True,
                         env=clean_env(), check=True).stdout
    return " ".join(out.split())


EXECUTE = """\
import json, sys, time
import nbformat
from nbclient import NotebookClient
path, folder, check = sys.argv[1], sys.argv[2], sys.argv[3]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(check))
start = time.perf_counter()
NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
               resources={"metadata": {"path": folder}}).execute()
seconds = time.perf_counter() - start
text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")


def shown(cell):  # the lines nbval would compare: streams joined, text/plain, text/html
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            if out and out[-1][0] == o.name:
                out[-1] = (o.name, out[-1][1] + "".join(o.text))
            else:
                out.append((o.name, "".join(o.text)))
        elif "data" in o:
            out += [(k, "".join(o.data[k])) for k in ("text/plain", "text/html") if k in o.data]
    return [f"{name}: {line}" for name, text in out for line in text.splitlines()]


stored = nbformat.read(path, as_version=4).cells
differ = {}
for k, (old, new) in enumerate(zip(stored, nb.cells)):
    if old.cell_type == "code" and old.get("outputs") and "NBVAL_IGNORE_OUTPUT" not in old.source:
        pairs = [(a, b) for a, b in zip(shown(old), shown(new) + [""] * 999) if a != b]
        if pairs or len(shown(old)) != len(shown(new)):
            differ[k] = pairs[0] if pairs else ("(number of lines)", "")
print(json.dumps({"seconds": seconds, "check": text, "differ": differ}))
"""


def execute_alone(python: Path, notebook: Path, work: Path) -> float:
    """Execute ``notebook`` alone in an empty folder with the environment's kernel."""
    folder = Path(tempfile.mkdtemp(prefix=notebook.stem + "-", dir=work))
    copy = folder / notebook.name
    shutil.copy2(notebook, copy)
    proc = subprocess.run([str(python), "-c", EXECUTE, copy, folder, CHECK_CELL],
                          capture_output=True, text=True, env=clean_env(), cwd=folder)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-6000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    check = json.loads(result["check"].split("EMULATION ", 1)[1])
    env_dir = python.parent.parent  # <venv>/bin/python, not resolved: that is the base
    assert check["numpy"] == PREINSTALLED["numpy"], check
    assert Path(check["prefix"]) == env_dir, check  # the environment's kernel ...
    assert Path(check["bncourse"]).is_relative_to(env_dir), check  # ... and the wheel
    # Reported, not failed: the cells' asserts check the claims, not the printed digits.
    for cell, (stored, fresh) in result["differ"].items():
        log(f"note: {notebook.name}, cell {cell}: stored {stored!r}, now {fresh!r}")
    return result["seconds"]


def unit_tests(python: Path, constraints: Path, work: Path, root: Path = ROOT) -> int:
    """The unit tests against the installed wheel, from a copy of tests/ outside the repo."""
    have = pins(root)
    pip_install(python, constraints, *[f"{t}=={have[t]}" for t in UNIT_TEST_TOOLS])
    tests = work / "unit" / "tests"
    shutil.copytree(root / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    for name in UNIT_TESTS_LEFT_OUT:
        (tests / name).unlink(missing_ok=True)
    code = ("import bncourse, numpy, sys; print(bncourse.__file__, numpy.__version__); "
            "sys.exit(bncourse.__file__.startswith(sys.argv[1]))")
    log(run([python, "-c", code, str(root)], cwd=tests.parent).stdout.strip())
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-W", "ignore::pytest.PytestUnknownMarkWarning",
           "--rootdir", tests.parent, "-n", "2", "--dist", "loadfile", "tests"]
    return subprocess.run([str(c) for c in cmd], cwd=tests.parent, env=clean_env()).returncode


def chapters(args_notebooks: list[Path]) -> list[Path]:
    if args_notebooks:
        return [p.resolve() for p in args_notebooks]
    found = sorted(COLAB_DIR.glob("*.ipynb"))
    if not found:
        raise SystemExit(f"no notebooks in {COLAB_DIR}: run tools/make_colab.py first")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every notebook of colab/)")
    parser.add_argument("--venv", type=Path, help="where to make the environment "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--reuse-venv", action="store_true",
                        help="with --venv: reuse an environment made before (development)")
    parser.add_argument("--no-unit-tests", action="store_true", help="chapters only")
    args = parser.parse_args(argv)

    notebooks = chapters(args.notebooks)
    work = Path(tempfile.mkdtemp(prefix="colab-emulation-"))
    start = time.perf_counter()
    try:
        constraints = work / "constraints.txt"
        constraints.write_text(emulation_constraints())
        wheel = build_wheel(work)
        log(f"wheel: {wheel.name}")
        python = make_venv(args.venv or work / "venv", constraints,
                          reuse=args.reuse_venv and args.venv is not None)

        by_extras: dict[tuple[str, ...], list[Path]] = {}
        for path in notebooks:
            extras = notebook_extras(json.loads(path.read_text(encoding="utf-8")))
            by_extras.setdefault(extras, []).append(path)
        order = sorted(by_extras, key=lambda e: (len(e), e))
        for smaller, larger in zip(order, order[1:]):  # each group adds extras, never swaps
            assert set(smaller) <= set(larger), f"extras {smaller} and {larger} do not nest"

        failed, times = [], {}
        for extras in order:
            spec = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
            log(f"%pip install -q \"bncourse{'[' + ','.join(extras) + ']' if extras else ''}\""
                f"  ->  pip install {spec}")
            pip_install(python, constraints, spec)
            log(f"environment: {installed(python)}")
            for path in by_extras[extras]:
                t0 = time.perf_counter()
                try:
                    seconds = execute_alone(python, path, work)
                    times[path.name] = seconds
                    log(f"PASS {path.name}: {seconds:.1f} s")
                except (RuntimeError, AssertionError, ValueError) as exc:
                    failed.append(path.name)
                    log(f"FAIL {path.name} after {time.perf_counter() - t0:.1f} s\n{exc}")
        rc = 1 if failed else 0
        if not args.no_unit_tests:
            log("unit tests against the installed wheel, NumPy " + PREINSTALLED["numpy"])
            if unit_tests(python, constraints, work) != 0:
                failed.append("unit tests")
                rc = 1
        total = time.perf_counter() - start
        log(f"{len(times)} chapter(s) passed, {len(failed)} failed"
            f"{': ' + ', '.join(failed) if failed else ''}; {total:.0f} s in all")
        return rc
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
