"""The GitHub workflows parse and run the README's two commands (and publish what they build)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the key `on` as the boolean true (YAML 1.1).
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _commands(workflow: dict) -> list[str]:
    return [line.strip() for step in _steps(workflow) for line in step.get("run", "").splitlines()]


def _actions(workflow: dict) -> set[str]:
    return {step["uses"].split("@")[0] for step in _steps(workflow) if "uses" in step}


def _readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README starts with a bash block of its commands"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readmes_commands_like_ci_run() -> None:
    ci = _load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    commands = _commands(ci)
    assert _readme_commands() == ["make book", "make test"]
    assert "make test" in commands and "PRESET=smoke make book" in commands
    assert commands.index("make test") < commands.index("PRESET=smoke make book")
    assert "make check-html" in commands
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert 'step "make test" make test' in ci_run and "PRESET=smoke make book" in ci_run
    assert {"actions/checkout", "actions/setup-python", "actions/cache"} <= _actions(ci)
    cache = next(step for step in _steps(ci) if step.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == ".venv" and "requirements.lock" in cache["with"]["key"]
    upload = next(step for step in _steps(ci) if "upload-artifact" in step.get("uses", ""))
    assert upload["if"] == "failure()" and upload["with"]["path"] == "executed/"


def test_publish_builds_the_book_deploys_pages_and_pushes_the_notebooks_branch() -> None:
    publish = _load("publish.yml")
    assert "workflow_dispatch" in publish["on"] and publish["on"]["push"]["tags"]
    commands = _commands(publish)
    assert "make book" in commands
    assert ".venv/bin/ntkbook export-notebooks _build/notebooks-branch" in commands
    assert any("git push --force" in line and line.endswith(" notebooks") for line in commands)
    assert {"actions/upload-pages-artifact", "actions/deploy-pages"} <= _actions(publish)
    caches = [step for step in _steps(publish) if step.get("uses", "").startswith("actions/cache")]
    executed = next(step for step in caches if step["with"]["path"] == "executed")
    for source in ("notebooks/**", "params/**", "src/ntkbook/**", "requirements.lock"):
        assert source in executed["with"]["key"]
