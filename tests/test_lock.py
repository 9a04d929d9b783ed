"""requirements.lock must cover pyproject.toml, and its hash must reach the provenance.

The lock pins every package of the CPU install (pyproject's core dependencies and its ``book``
and ``test`` extras) with hashes, for the Python and platform named in its header; ``make lock``
writes it and ``make venv`` installs it. ``lock_problems`` checks that every dependency that
pyproject declares for that target is pinned, within pyproject's bounds and with a hash, so that
adding or tightening a dependency without running ``make lock`` fails here (and not later, as a
``pip check`` failure in ``make venv``). Transitive pins are the resolver's business: a test can
tell that the lock lacks a declared dependency, not that it holds one too many.
"""

from __future__ import annotations

import copy
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from ntkbook.book import provenance

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
#: The extras that ``make lock`` resolves together with the core dependencies.
LOCKED_EXTRAS = ("book", "test")
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>\S+?)(?=\s|;|$)"
)
HASH = re.compile(r"--hash=sha256:(?P<hex>[0-9a-f]{64})\b")
HEADER_PYTHON = re.compile(r"--python-version (?P<version>3\.\d+)\b")
HEADER_PLATFORM = re.compile(r"--python-platform (?P<platform>\S+)")


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: int
    line: str


def parse_lock(text: str) -> tuple[dict[str, Pin], list[str]]:
    """Pins by canonical name, and the requirement lines that are not ``name==version``."""
    pins: dict[str, Pin] = {}
    unpinned: list[str] = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if match is None:
            unpinned.append(line)
            continue
        name = canonicalize_name(match["name"])
        pins[name] = Pin(name, Version(match["version"]), len(HASH.findall(line)), line)
    return pins, unpinned


def target_environment(python: str) -> dict[str, str]:
    """Marker values of the lock's target: CPython ``python`` on Linux x86_64."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def declared_requirements(pyproject: dict[str, Any]) -> tuple[list[Requirement], list[str]]:
    """Core dependencies plus those of :data:`LOCKED_EXTRAS`, and the problems finding them."""
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    problems = [
        f"pyproject has no extra {extra!r} (the lock is made from {list(LOCKED_EXTRAS)})"
        for extra in LOCKED_EXTRAS
        if extra not in extras
    ]
    texts = list(project.get("dependencies", []))
    for extra in LOCKED_EXTRAS:
        texts += extras.get(extra, [])
    return [Requirement(text) for text in texts], problems


def lock_problems(lock_text: str, pyproject: dict[str, Any]) -> list[str]:
    """Every way in which ``lock_text`` fails to pin what ``pyproject`` declares, as lines."""
    problems: list[str] = []
    pins, unpinned = parse_lock(lock_text)
    problems += [f"requirements.lock line is not 'name==version': {line!r}" for line in unpinned]
    problems += [
        f"{pin.name}=={pin.version} has no sha256 hash" for pin in pins.values() if not pin.hashes
    ]
    if not pins:
        problems.append("requirements.lock pins nothing")

    python = HEADER_PYTHON.search(lock_text)
    if python is None:
        problems.append("requirements.lock does not name its --python-version (run make lock)")
        return problems
    locked_python = python["version"]
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    if Version(f"{locked_python}.0") not in requires:
        problems.append(
            f"requirements.lock is for Python {locked_python}, pyproject requires-python is "
            f"{str(requires)!r}"
        )

    own = canonicalize_name(pyproject["project"]["name"])
    if own in pins:
        problems.append(
            f"requirements.lock pins {own} itself (make venv installs it with --no-deps)"
        )

    requirements, extra_problems = declared_requirements(pyproject)
    problems += extra_problems
    environment = target_environment(locked_python)
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(
                f"{requirement} is in pyproject but not in requirements.lock (run make lock)"
            )
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(
                f"{name}: requirements.lock pins {pin.version}, pyproject says "
                f"{str(requirement.specifier)!r} (run make lock)"
            )
    return problems


def load() -> tuple[str, dict[str, Any]]:
    return LOCK.read_text(), tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_lock_covers_pyproject_within_its_bounds() -> None:
    lock_text, pyproject = load()
    assert lock_problems(lock_text, pyproject) == []


def test_lock_pins_a_whole_install_with_hashes() -> None:
    pins, unpinned = parse_lock(LOCK.read_text())
    assert unpinned == []
    # jax, the Jupyter Book stack and pytest pull in well over a hundred distributions.
    assert len(pins) > 100
    assert all(pin.hashes >= 1 for pin in pins.values())
    for name in ("jaxlib", "sphinx", "pluggy"):  # transitive: pinned though pyproject omits them
        assert name in pins


def test_lock_targets_the_python_and_platform_that_make_lock_names() -> None:
    lock_text = LOCK.read_text()
    makefile = (ROOT / "Makefile").read_text()
    python = re.search(r"^LOCK_PYTHON := (\S+)$", makefile, re.MULTILINE)
    platform = re.search(r"^LOCK_PLATFORM := (\S+)$", makefile, re.MULTILINE)
    assert python and platform
    assert HEADER_PYTHON.search(lock_text)["version"] == python[1]
    assert HEADER_PLATFORM.search(lock_text)["platform"] == platform[1]
    assert "x86_64" in platform[1] and "linux" in platform[1]
    extras = " ".join(f"--extra {extra}" for extra in LOCKED_EXTRAS)
    assert extras in makefile
    assert "pip install --require-hashes -r $(LOCK)" in makefile
    assert "pip install --no-deps -e ." in makefile
    assert "$(STAMP): pyproject.toml $(LOCK)" in makefile


def _drift(change_lock=None, change_pyproject=None) -> list[str]:
    lock_text, pyproject = load()
    pyproject = copy.deepcopy(pyproject)
    if change_lock is not None:
        lock_text = change_lock(lock_text)
    if change_pyproject is not None:
        change_pyproject(pyproject)
    return lock_problems(lock_text, pyproject)


def _core(pyproject: dict) -> list[str]:
    return pyproject["project"]["dependencies"]


def _extra(name: str):
    return lambda pyproject: pyproject["project"]["optional-dependencies"][name]


def _drop_hashes_of(name: str):
    def change(text: str) -> str:
        lines = text.splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}=="))
        end = start + 1
        while end < len(lines) and lines[end].lstrip().startswith("--hash="):
            end += 1
        version = lines[start].split(" ", 1)[0]
        return "".join(lines[:start] + [version + "\n"] + lines[end:])

    return change


@pytest.mark.parametrize(
    ("change_lock", "change_pyproject", "message"),
    [
        (None, lambda py: _core(py).append("polars>=1"), "polars>=1 is in pyproject but not in"),
        (None, lambda py: _extra("book")(py).append("seaborn>=0.13"), "seaborn>=0.13 is in"),
        (None, lambda py: _extra("test")(py).append("hypothesis>=6"), "hypothesis>=6 is in"),
        (None, lambda py: _core(py).__setitem__(3, "numpy>=99"), "numpy: requirements.lock pins"),
        (None, lambda py: _core(py).__setitem__(0, "jax<0.5"), "jax: requirements.lock pins"),
        (_drop_hashes_of("numpy"), None, "has no sha256 hash"),
        (lambda t: t.replace("\nscipy==", "\nscipy>="), None, "is not 'name==version'"),
        (lambda t: t.replace("--python-version 3.11", "--python-version 3.13"), None, "3.13"),
        (lambda t: t + "ntkbook==0.1.0 --hash=sha256:" + "0" * 64 + "\n", None, "ntkbook itself"),
        (None, lambda py: py["project"]["optional-dependencies"].pop("test"), "no extra 'test'"),
    ],
)
def test_drift_is_detected(change_lock, change_pyproject, message: str) -> None:
    problems = _drift(change_lock, change_pyproject)
    assert any(message in problem for problem in problems), problems


def test_a_new_dependency_that_the_lock_already_pins_within_bounds_passes() -> None:
    # rich comes in through jupyter-book; declaring it needs no new lock, a higher floor does.
    assert _drift(change_pyproject=lambda py: _core(py).append("rich>=13")) == []
    problems = _drift(change_pyproject=lambda py: _core(py).append("rich>=99"))
    assert any(problem.startswith("rich: requirements.lock pins") for problem in problems)


def test_dependencies_for_other_platforms_need_no_pin() -> None:
    def add(pyproject: dict) -> None:
        _core(pyproject).append("pywin32>=306; sys_platform == 'win32'")
        _core(pyproject).append("tomli>=2; python_version < '3.11'")

    assert _drift(change_pyproject=add) == []


def test_provenance_records_the_hash_of_the_projects_lock(tmp_path: Path) -> None:
    expected = f"sha256:{hashlib.sha256(LOCK.read_bytes()).hexdigest()}"
    assert provenance.project_lock() == LOCK
    assert provenance.package_versions()["lock"] == expected

    other = tmp_path / "requirements.lock"
    other.write_text("numpy==2.0 --hash=sha256:" + "0" * 64 + "\n")
    assert provenance.package_versions(other)["lock"] != expected
    assert provenance.lock_hash(tmp_path / "missing.lock") is None


def test_a_new_lock_changes_the_content_hash(tmp_path: Path) -> None:
    notebook = tmp_path / "chapter.ipynb"
    notebook.write_text("{}")
    versions = provenance.package_versions()
    key = provenance.content_hash(notebook, {"n": 1}, "smoke", "source", versions)
    relocked = {**versions, "lock": "sha256:" + "1" * 64}
    assert provenance.content_hash(notebook, {"n": 1}, "smoke", "source", relocked) != key
    assert provenance.content_hash(notebook, {"n": 1}, "smoke", "source", dict(versions)) == key


def test_provenance_markdown_shows_the_lock_apart_from_the_versions() -> None:
    record = {
        "command": "ntkbook run x",
        "preset": "smoke",
        "git": {"commit": "abc", "dirty": False},
        "runtime": {},
        "wall_time_s": 1.0,
        "timestamp": "2026-01-01T00:00:00",
        "content_hash": "sha256:00",
        "parameters": {},
        "packages": {"python": "3.11.7", "numpy": "2.4.6", "lock": "sha256:" + "a" * 64},
    }
    text = provenance.provenance_markdown(record)
    assert "| Packages | `python 3.11.7, numpy 2.4.6` |" in text
    assert f"| Lock file | `requirements.lock` `sha256:{'a' * 64}` |" in text
    del record["packages"]["lock"]
    assert "| Lock file | none (not run from a checkout) |" in provenance.provenance_markdown(
        record
    )
