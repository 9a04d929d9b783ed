"""Provenance of an executed chapter and the content hash that drives the result cache.

Provenance answers "where do these numbers come from": the effective parameters and preset, the
git commit (and whether the tree had uncommitted changes), package versions and the hash of the
lock file they were pinned by, the JAX backend and devices the kernel used, wall time, timestamp
and the content hash.

The content hash covers everything that can change a chapter's output: the source notebook's
bytes, the effective parameters, the preset name, every file of the ``ntkbook`` package (the
chapter's code lives there, not in the notebook), the versions of the numerical packages and the
SHA-256 of ``requirements.lock`` (``versions["lock"]``, see :func:`package_versions`). The git
commit is deliberately left out: committing unchanged files must not invalidate results.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions are recorded (those that are installed).
PACKAGES = (
    "ntkbook",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "scipy",
    "matplotlib",
    "papermill",
)

UNKNOWN = "unknown"

#: The lock file at the project root: every package of the CPU install, pinned with hashes.
LOCK_FILE = "requirements.lock"


def package_versions(lock: Path | None = None) -> dict[str, str]:
    """Versions of Python and of each installed distribution in :data:`PACKAGES`, and the lock.

    ``"lock"`` is ``"sha256:<hex>"`` of the lock file: ``lock`` if given, else the
    ``requirements.lock`` of the checkout that ``ntkbook`` is imported from (:func:`project_lock`).
    It is absent when there is no such file (``ntkbook`` installed from a wheel). The entry names
    the lock of the checkout; whether ``.venv`` was installed from it, the versions above tell.
    """
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    digest = lock_hash(lock)
    if digest is not None:
        versions["lock"] = digest
    return versions


def project_lock() -> Path | None:
    """``requirements.lock`` of the checkout holding the imported ``ntkbook``, or ``None``.

    In the editable install that ``make venv`` makes, the package is ``<root>/src/ntkbook`` and
    the lock is ``<root>/requirements.lock`` beside ``pyproject.toml``. A package installed into
    ``site-packages`` has no checkout around it, hence no lock.
    """
    root = package_dir().parents[1]
    lock = root / LOCK_FILE
    if lock.is_file() and (root / "pyproject.toml").is_file():
        return lock
    return None


def lock_hash(path: Path | None = None) -> str | None:
    """``"sha256:<hex>"`` of the bytes of ``path`` (default :func:`project_lock`), or ``None``."""
    path = path if path is not None else project_lock()
    if path is None or not path.is_file():
        return None
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def git_state(root: Path) -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool or None}`` for the repository at ``root``.

    ``dirty`` counts untracked files too: a results file computed from a file that was never
    committed cannot be reproduced from the commit. Outside a git repository (or without git, or
    before the first commit) the commit is ``"unknown"`` and ``dirty`` is ``None``.
    """
    commit = git_output(root, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": UNKNOWN, "dirty": None}
    status = git_output(root, "status", "--porcelain")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def git_output(root: Path, *args: str) -> str | None:
    """Standard output of ``git -C root args``, stripped; ``None`` when git fails or is missing."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def package_dir() -> Path:
    """Directory of the imported ``ntkbook`` package (``src/ntkbook`` in an editable install)."""
    import ntkbook

    return Path(ntkbook.__file__).resolve().parent


def source_tree_hash(directory: Path | None = None) -> str:
    """SHA-256 over every file under ``directory`` (default: the ``ntkbook`` package).

    Files are taken in sorted relative-path order and each contributes its path and the hash of
    its bytes, so renaming a file changes the hash as well. ``__pycache__`` and compiled files
    are skipped: they change whenever Python runs, not when the code does.
    """
    base = directory if directory is not None else package_dir()
    digest = hashlib.sha256()
    files = sorted(
        (path for path in base.rglob("*") if path.is_file()),
        key=lambda path: path.relative_to(base).as_posix(),
    )
    for path in files:
        relative = path.relative_to(base)
        if "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal text, hence equal hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(
    notebook: Path,
    parameters: dict[str, Any],
    preset: str,
    source_hash: str,
    versions: dict[str, str],
) -> str:
    """The cache key of a chapter run, as ``"sha256:<hex>"``.

    ``versions`` is :func:`package_versions`: with its ``"lock"`` entry, a new lock file gives
    a new key even where the recorded versions did not change.
    """
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(notebook.read_bytes()).digest())
    digest.update(
        canonical_json(
            {
                "parameters": parameters,
                "preset": preset,
                "package_source": source_hash,
                "versions": versions,
            }
        ).encode()
    )
    return f"sha256:{digest.hexdigest()}"


def _code(value: Any) -> str:
    """Render ``value`` as an inline code span that survives a Markdown table."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def provenance_markdown(provenance: dict[str, Any]) -> str:
    """The "Provenance" section appended to an executed chapter: two small Markdown tables."""
    git = provenance["git"]
    commit = git["commit"]
    if git.get("dirty"):
        commit_text = f"{_code(commit)} with uncommitted changes"
    else:
        commit_text = _code(commit)
    runtime = provenance["runtime"]
    backend = runtime.get("jax_backend") or "jax not installed"
    devices = ", ".join(runtime.get("devices") or []) or "none"
    packages = dict(provenance["packages"])
    lock = packages.pop("lock", None)
    versions = ", ".join(f"{name} {version}" for name, version in packages.items())
    lock_text = f"`{LOCK_FILE}` {_code(lock)}" if lock else "none (not run from a checkout)"
    rows = [
        ("Command", _code(provenance["command"])),
        ("Preset", _code(provenance["preset"])),
        ("Git commit", commit_text),
        ("JAX backend", f"{_code(backend)} on {_code(devices)}"),
        ("Wall time", f"{provenance['wall_time_s']:.1f} s"),
        ("Executed at", _code(provenance["timestamp"])),
        ("Packages", _code(versions)),
        ("Lock file", lock_text),
        ("Content hash", _code(provenance["content_hash"])),
    ]
    parameters = provenance["parameters"]
    if parameters:
        parameter_lines = [
            "| Parameter | Value |",
            "| --- | --- |",
            *(f"| {_code(name)} | {_code(value)} |" for name, value in parameters.items()),
        ]
    else:
        parameter_lines = ["This chapter has no parameters."]
    lines = [
        "## Provenance",
        "",
        "The numbers and figures above were computed by this run; its headline numbers and this "
        "record are also in `summary.json` beside the executed notebook.",
        "",
        "| Item | Value |",
        "| --- | --- |",
        *(f"| {item} | {value} |" for item, value in rows),
        "",
        *parameter_lines,
    ]
    return "\n".join(lines) + "\n"
