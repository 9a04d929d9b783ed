"""environment.yml (conda users) must agree with pyproject.toml (pip users).

environment.yml pins the Python minor version (one that pyproject admits, and the one that
requirements.lock is for), lists pyproject's core dependencies as conda packages with the same
version bounds, and installs the package with its extras through pip.
``sync_problems`` compares the two files; the tests check the real files and that each kind of
drift is caught.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: PyPI name -> conda-forge name, where they differ.
CONDA_NAMES: dict[str, str] = {}
PIP_INSTALL = re.compile(r"^-e \.\[(?P<extras>[a-z0-9_,-]+)\]$")
#: The header line of requirements.lock that names the Python it was resolved for.
LOCK_PYTHON = re.compile(r"--python-version (?P<version>3\.\d+)\b")


def load_files() -> tuple[dict[str, Any], dict[str, Any]]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return environment, pyproject


def lock_python() -> str:
    """The Python minor version requirements.lock was resolved for, from its header."""
    match = LOCK_PYTHON.search((ROOT / "requirements.lock").read_text())
    assert match, "requirements.lock does not name its --python-version (run make lock)"
    return match["version"]


def _python_minors(spec: SpecifierSet) -> set[str]:
    return {f"3.{minor}" for minor in range(6, 20) if Version(f"3.{minor}.0") in spec}


def sync_problems(
    environment: dict[str, Any], pyproject: dict[str, Any], locked_python: str | None = None
) -> list[str]:
    """Every disagreement between environment.yml and pyproject.toml, as readable lines.

    ``locked_python`` (default: :func:`lock_python`) is the Python of requirements.lock, which
    environment.yml must pin as well.
    """
    locked_python = lock_python() if locked_python is None else locked_python
    problems: list[str] = []
    project = pyproject["project"]
    conda: dict[str, str] = {}
    pip_entries: list[str] = []
    python_pin = None
    for entry in environment.get("dependencies", []):
        if isinstance(entry, dict):
            pip_entries += entry.get("pip", [])
        elif entry.startswith("python="):
            python_pin = entry.removeprefix("python=")
        elif entry != "pip":
            requirement = Requirement(entry)
            conda[canonicalize_name(requirement.name)] = str(requirement.specifier)

    allowed = _python_minors(SpecifierSet(project["requires-python"]))
    if python_pin is None:
        problems.append("environment.yml does not pin python")
    elif python_pin not in allowed:
        problems.append(
            f"environment.yml pins python={python_pin}, pyproject requires-python "
            f"{project['requires-python']!r} allows {sorted(allowed)}"
        )
    elif python_pin != locked_python:
        problems.append(
            f"environment.yml pins python={python_pin}, requirements.lock is for {locked_python}"
        )

    expected = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        expected[canonicalize_name(CONDA_NAMES.get(name, name))] = str(requirement.specifier)
    for name in sorted(expected.keys() - conda.keys()):
        problems.append(f"{name}{expected[name]} is in pyproject but not in environment.yml")
    for name in sorted(conda.keys() - expected.keys()):
        problems.append(f"{name}{conda[name]} is in environment.yml but not a pyproject dependency")
    for name in sorted(expected.keys() & conda.keys()):
        if SpecifierSet(expected[name]) != SpecifierSet(conda[name]):
            problems.append(
                f"{name}: pyproject says {expected[name]!r}, environment.yml says {conda[name]!r}"
            )

    installs = [m for m in map(PIP_INSTALL.match, pip_entries) if m]
    if len(installs) != 1 or len(pip_entries) != 1:
        problems.append(f"the pip section must be exactly '-e .[extras]', got {pip_entries}")
    else:
        extras = installs[0]["extras"].split(",")
        known = project.get("optional-dependencies", {})
        for extra in extras:
            if extra not in known:
                problems.append(f"pip installs extra {extra!r}, pyproject has {sorted(known)}")
    return problems


def test_environment_matches_pyproject() -> None:
    environment, pyproject = load_files()
    assert sync_problems(environment, pyproject) == []


def test_environment_installs_book_and_test_extras_like_the_makefile() -> None:
    environment, _ = load_files()
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert pip == ["-e .[book,test]"]
    makefile = (ROOT / "Makefile").read_text()
    # make venv installs the lock, which make lock resolves from the same two extras.
    assert "pip install --require-hashes -r $(LOCK)" in makefile
    assert "--extra book --extra test" in makefile


def test_lock_and_environment_pin_a_python_that_pyproject_admits() -> None:
    _, pyproject = load_files()
    assert lock_python() in _python_minors(SpecifierSet(pyproject["project"]["requires-python"]))


def _drift(change) -> list[str]:
    environment, pyproject = load_files()
    environment, pyproject = copy.deepcopy(environment), copy.deepcopy(pyproject)
    change(environment, pyproject)
    return sync_problems(environment, pyproject)


def _replace(environment: dict, old: str, new: str | None) -> None:
    deps = environment["dependencies"]
    index = next(i for i, entry in enumerate(deps) if entry == old)
    if new is None:
        del deps[index]
    else:
        deps[index] = new


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda env, py: _replace(env, "numpy>=1.26", "numpy>=2"), "numpy: pyproject says"),
        (lambda env, py: _replace(env, "optax>=0.2.4", None), "optax>=0.2.4 is in pyproject"),
        (lambda env, py: env["dependencies"].insert(2, "polars>=1"), "polars>=1 is in environment"),
        (lambda env, py: py["project"]["dependencies"].append("rich>=13"), "rich>=13 is in pypr"),
        (lambda env, py: _replace(env, "python=3.11", "python=3.10"), "requires-python"),
        (lambda env, py: _replace(env, "python=3.11", "python=3.12"), "lock is for 3.11"),
        (
            lambda env, py: py["project"]["optional-dependencies"].pop("book"),
            "pip installs extra 'book'",
        ),
    ],
)
def test_drift_is_detected(change, message: str) -> None:
    problems = _drift(change)
    assert any(message in problem for problem in problems), problems
