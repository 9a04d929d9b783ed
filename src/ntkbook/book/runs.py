"""Chapter runs isolated by content: each run in its own directory, only finished runs published.

A chapter's output directory (``executed/<chapter>`` by default; the *published* path) is a
symbolic link into a run store beside it, ``executed/.runs/``:

- ``.runs/<hash>.partial/``: a run in progress, or one that was killed or failed. A rerun with the
  same content hash executes in the same directory, so the resumable state that it left
  (kernel records, training checkpoints) is resumed, and only by the run that made it.
- ``.runs/<hash>-<UTC time>/``: a finished run (its ``summary.json`` has provenance). A run is
  renamed here from ``.partial`` only after the driver has written the provenance.
- ``executed/<chapter>`` -> ``.runs/<hash>-<time>``: the published run, replaced by an atomic
  symlink swap (:func:`publish`). A failed or killed run never touches it.

``<hash>`` is the first 16 hex digits of the run's content hash (notebook, effective parameters,
preset, package code, package versions), so switching presets (smoke -> book -> smoke) finds and
republishes each preset's finished run instead of executing it again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntkbook.book.errors import UsageError
from ntkbook.book.summary import SUMMARY_FILE

RUNS_DIR = ".runs"
PARTIAL_SUFFIX = ".partial"
#: Hex digits of the content hash in a run directory's name.
HASH_DIGITS = 16


def short_hash(content_hash: str) -> str:
    """``"sha256:0123…"`` -> ``"0123456789abcdef"``."""
    return content_hash.removeprefix("sha256:")[:HASH_DIGITS]


def runs_dir(published: Path) -> Path:
    """The run store of a published chapter directory: ``<its parent>/.runs``."""
    return published.parent / RUNS_DIR


def partial_dir(published: Path, content_hash: str) -> Path:
    """Where a run with ``content_hash`` executes (and resumes after a kill)."""
    return runs_dir(published) / f"{short_hash(content_hash)}{PARTIAL_SUFFIX}"


def finished_name(content_hash: str, when: dt.datetime | None = None) -> str:
    """A new finished-run directory name: ``<hash>-<UTC time>-<random>``."""
    when = when or dt.datetime.now(dt.UTC)
    return f"{short_hash(content_hash)}-{when:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"


@dataclass(frozen=True)
class Run:
    """One run directory of a store, as ``ntkbook runs ls`` shows it."""

    path: Path
    finished: bool
    chapter: str | None
    preset: str | None
    content_hash: str | None
    wall_time_s: float | None
    timestamp: str | None

    @property
    def name(self) -> str:
        return self.path.name

    def size_bytes(self) -> int:
        """Bytes of the files in the run directory (walked on request: only ``runs ls|gc``)."""
        return sum(
            p.stat().st_size for p in self.path.rglob("*") if p.is_file() and not p.is_symlink()
        )


def read_provenance(directory: Path) -> dict[str, Any] | None:
    """The provenance of a finished run in ``directory``, or ``None`` (no summary, unfinished)."""
    try:
        data = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    provenance = data.get("provenance") if isinstance(data, dict) else None
    return provenance if isinstance(provenance, dict) else None


def list_runs(store: Path) -> list[Run]:
    """Every run directory in ``store``, oldest first (by finish time, partial runs last)."""
    if not store.is_dir():
        return []
    runs = []
    for path in sorted(store.iterdir()):
        if not path.is_dir() or path.is_symlink():
            continue
        provenance = read_provenance(path)
        finished = provenance is not None and not path.name.endswith(PARTIAL_SUFFIX)
        runs.append(
            Run(
                path=path,
                finished=finished,
                chapter=(provenance or {}).get("chapter"),
                preset=(provenance or {}).get("preset"),
                content_hash=(provenance or {}).get("content_hash"),
                wall_time_s=(provenance or {}).get("wall_time_s"),
                timestamp=(provenance or {}).get("timestamp"),
            )
        )
    runs.sort(key=lambda run: (not run.finished, run.timestamp or "", run.name))
    return runs


def finished_runs(store: Path, content_hash: str) -> Iterator[Path]:
    """Finished runs with exactly ``content_hash``, newest first."""
    prefix = short_hash(content_hash) + "-"
    for run in reversed(list_runs(store)):
        if run.finished and run.name.startswith(prefix) and run.content_hash == content_hash:
            yield run.path


def previous_wall_time(store: Path, chapter: str, preset: str) -> float | None:
    """Wall time of the newest finished run of ``chapter`` with ``preset`` (an estimate)."""
    for run in reversed(list_runs(store)):
        if run.finished and run.chapter == chapter and run.preset == preset:
            return run.wall_time_s
    return None


def published_target(published: Path) -> Path | None:
    """The run directory that ``published`` points to, or ``None`` if it is not a run link."""
    if not published.is_symlink():
        return None
    target = (published.parent / os.readlink(published)).resolve()
    return target if target.is_dir() else None


def check_output_dir(published: Path) -> None:
    """Refuse, before anything runs, a published path that cannot take a run.

    The published path must be a directory or a run link (or not exist yet), must not lie under a
    file, and the directories that a run writes (its parent, where the link is swapped, and the
    run store beside it) must be writable or creatable.

    Raises:
        UsageError: naming the path and what is wrong with it.
    """
    if published.exists() and not published.is_dir():
        raise UsageError(f"output directory {str(published)!r} exists and is not a directory")
    store = runs_dir(published)
    for target in (published.parent, store):
        for existing in (target, *target.parents):
            if not existing.exists():
                continue
            if not existing.is_dir():
                raise UsageError(
                    f"output directory {str(published)!r} lies under {str(existing)!r}, "
                    "which is a file"
                )
            if not os.access(existing, os.W_OK | os.X_OK):
                raise UsageError(
                    f"output directory {str(published)!r} cannot be written: {str(existing)!r} "
                    "is not writable"
                )
            break


def publish(published: Path, run_dir: Path) -> None:
    """Point ``published`` at ``run_dir`` by an atomic symlink swap.

    A new relative link is made beside ``published`` and renamed over it, so a reader sees either
    the old run or the new one, never neither. A real directory left at ``published`` by an older
    ntkbook is first moved into the store as ``legacy-<time>`` (nothing is deleted).
    """
    published.parent.mkdir(parents=True, exist_ok=True)
    if published.is_dir() and not published.is_symlink():
        legacy = runs_dir(published) / f"legacy-{published.name}-{uuid.uuid4().hex[:8]}"
        legacy.parent.mkdir(parents=True, exist_ok=True)
        os.replace(published, legacy)
    link = published.parent / f".{published.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(run_dir, published.parent), link)
    try:
        os.replace(link, published)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def collect_garbage(store: Path, keep: set[Path], dry_run: bool = False) -> list[Run]:
    """Delete every run in ``store`` whose directory is not in ``keep``; return what went.

    ``keep`` holds the published run directories (resolved). Partial runs are deleted too: a
    killed run's state is only useful to an immediate rerun of the same settings.
    """
    removed = []
    keep = {path.resolve() for path in keep}
    for run in list_runs(store):
        if run.path.resolve() in keep:
            continue
        removed.append(run)
        if not dry_run:
            shutil.rmtree(run.path)
    return removed
