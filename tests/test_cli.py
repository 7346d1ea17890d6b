"""Every command-line entry point of the package explains each option, with its default.

``python -m <module> --help`` is run as a reader would run it; its option lines are parsed
(an option, then its help on the same line or on indented lines below it).
"""

from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The commands readers type (README, chapters), each with the module that defines its
# argparse ``main`` since the package was layered (the old paths are shims that run it).
ENTRY_POINTS = {
    "bncourse.accuracy": "bncourse.course.accuracy",
    "bncourse.figure1": "bncourse.paper.figure1",
    "bncourse.bench": "bncourse.bench.cpu",
}
CLI_MODULES = list(ENTRY_POINTS)


def test_every_main_module_is_listed():
    """A new ``python -m bncourse.X`` entry point gets checked here too."""
    mains = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "bncourse").rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
        and "argparse" in path.read_text(encoding="utf-8")
    }
    listed = set(ENTRY_POINTS.values())
    assert mains <= listed, sorted(mains - listed)


def help_text(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def parse_options(text):
    """{option line: its help text} from the ``options:`` section of argparse's help."""
    section = text.split("\noptions:\n", 1)[1]
    options, current = {}, None
    for line in section.splitlines():
        match = re.match(r"  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if match:                                  # "  --opt ARG   help..." or "  --opt ARG"
            current = match[1]
            options[current] = match[2] or ""
        elif line.startswith(" " * 4) and current:  # help continued (or begun) below
            options[current] = (options[current] + " " + line.strip()).strip()
    return options


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_option_has_help_with_its_default(module):
    text = help_text(module)
    options = parse_options(text)
    assert len(options) >= 2, text  # -h and at least one option of ours
    for option, help_ in options.items():
        assert help_, f"{module}: {option} has no help text"
        if not option.startswith("-h"):
            assert "default" in help_, f"{module}: {option} does not give its default: {help_}"


@pytest.mark.parametrize("module", CLI_MODULES)
def test_description_is_whole_sentences(module):
    text = help_text(module)
    description = " ".join(text.split("\n\n")[1].split())  # after the usage block
    assert description.endswith("."), f"{module}: description stops mid-sentence: {description}"


def test_readme_and_chapter_9_give_the_same_full_run():
    command = "python -m bncourse.figure1 --full"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    chapter = (ROOT / "book" / "09_paper_experiment.ipynb").read_text(encoding="utf-8")
    assert command in readme and command in chapter
    assert "--steps 50000" not in readme + chapter
