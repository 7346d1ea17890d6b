"""The workflow that publishes the book (.github/workflows/deploy-book.yml) builds it with
README.md's command and deploys _build/html with the official Pages actions; the site's and
the repository's URLs are each written once, in _config.yml."""

from __future__ import annotations

from pathlib import Path
import re

import pytest
import tomllib

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (comes with jupyter-book)")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy-book.yml").read_text())
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def readme_build_command() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^    (python3 -m pip install .*jupyter-book build .*)$", readme, re.M)
    assert match, "README.md states the build command on an indented line"
    return match.group(1).strip()


def steps(job: str) -> list[dict]:
    return WORKFLOW["jobs"][job]["steps"]


def uses(job: str) -> list[str]:
    return [step["uses"].split("@")[0] for step in steps(job) if "uses" in step]


def test_it_runs_on_pushes_to_the_book_branch():
    on = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads a bare `on` as True
    assert on["push"]["branches"] == [CONFIG["repository"]["branch"]]
    assert "workflow_dispatch" in on
    assert WORKFLOW["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_the_build_job_uses_the_readme_command_and_uploads_the_html():
    runs = [step["run"].strip() for step in steps("build") if "run" in step]
    assert readme_build_command() in runs
    assert "python3 tools/make_colab.py --check" in runs
    assert uses("build")[:2] == ["actions/checkout", "actions/setup-python"]
    upload = next(s for s in steps("build") if s.get("uses", "").startswith(
        "actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert "actions/configure-pages" in uses("build")


def test_the_deploy_job_publishes_with_the_official_action():
    job = WORKFLOW["jobs"]["deploy"]
    assert job["needs"] == "build" and job["environment"]["name"] == "github-pages"
    assert uses("deploy") == ["actions/deploy-pages"]


def test_each_url_is_written_once():
    site, repo = CONFIG["html"]["baseurl"], CONFIG["repository"]["url"]
    owner, name = repo.rstrip("/").split("github.com/")[1].split("/")
    assert site == f"https://{owner}.github.io/{name}/"  # GitHub Pages' address of the repo
    text = (ROOT / ".github" / "workflows" / "deploy-book.yml").read_text()
    assert "github.io" not in text and "github.com/" not in text
    # pyproject.toml cannot read _config.yml: its copy must agree
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Repository"] == repo
