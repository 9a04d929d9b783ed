"""Atomic file writes: a crash never leaves a half-written result behind.

A reader (the book build, a test, the result cache, a resumed training) must never see a
half-written file: every write goes to a temporary file ``.<name>.<8 random chars>.tmp`` in the
same directory (so the final rename stays on one file system), is flushed to disk, and is moved
into place with :func:`os.replace`, which is atomic on POSIX and Windows. The directory is then
fsynced too, so the rename itself survives a power cut.

- **Permissions.** A new file gets ``0666 & ~umask``, like any file ``open()`` creates (the
  temporary file is created with mode 0666 and the kernel applies the umask); a rewritten file
  keeps the mode it had.
- **Stale temporary files.** A writer killed between creating its temporary file and the rename
  leaves that file behind. Every write sweeps the temporary files of *its own* target (only names
  of the pattern above) that are at least :data:`STALE_AFTER_S` old and that no live writer holds:
  a writer keeps an exclusive ``flock`` on its temporary file until the rename, so a file whose
  lock can be taken belongs to a dead writer. Where locks are not available (Windows, some network
  file systems) a temporary file is swept only after :data:`STALE_UNLOCKED_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["write_bytes_atomic", "atomic_write_text", "atomic_write_json", "sweep_stale_temp_files"]

#: A temporary file younger than this (seconds) is never swept, locked or not.
STALE_AFTER_S = 60.0
#: Without file locks, a temporary file is swept only when it is older than this (seconds).
STALE_UNLOCKED_AFTER_S = 24 * 3600.0

_TEMP_SUFFIX = ".tmp"
# 8 characters: ``secrets.token_hex(4)`` here, ``tempfile.mkstemp`` in earlier versions.
_TEMP_TOKEN = r"[a-z0-9_]{8}"
_NEW_FILE_MODE = 0o666
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES, errno.EISDIR}


def _temp_name(target: Path) -> str:
    return f".{target.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"


def _temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.name)}\.{_TEMP_TOKEN}{re.escape(_TEMP_SUFFIX)}")


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create and open a new temporary file beside ``target``; the umask applies to its mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.parent / _temp_name(target)
        try:
            return os.open(tmp, flags, _NEW_FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _lock(fd: int) -> bool | None:
    """Take an exclusive non-blocking ``flock`` on ``fd``.

    Returns True when taken, False when another open file holds it, None when this platform or
    file system has no locks.
    """
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry (the rename) to disk where the platform allows it."""
    if os.name == "nt":  # a directory cannot be opened for fsync on Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        if error.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def sweep_stale_temp_files(path: str | os.PathLike[str], *, now: float | None = None) -> list[Path]:
    """Remove temporary files that killed writers of ``path`` left behind; return them.

    Only files named like this module's temporary files for ``path``
    (``.<name>.<8 chars>.tmp``) are considered, and only those at least :data:`STALE_AFTER_S`
    old whose writer is gone (its lock can be taken; without locks, those older than
    :data:`STALE_UNLOCKED_AFTER_S`). Errors are ignored: sweeping is housekeeping, never a reason
    for a write to fail.
    """
    target = Path(path)
    pattern = _temp_pattern(target)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        candidate = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < STALE_AFTER_S:
                continue
            fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            locked = _lock(fd)
            if locked is False:
                continue  # a live writer holds it
            if locked is None and now - info.st_mtime < STALE_UNLOCKED_AFTER_S:
                continue
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating its folder) and return the path.

    A new file gets mode ``0666 & ~umask``; an existing file keeps its mode. See the module
    docstring for the temporary file, the directory fsync and the sweep of stale temporary files.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        keep_mode = None
    fd, tmp = _create_temp(target)
    try:
        # Held until the rename: a sweeper takes an unlocked temporary file for a dead writer's.
        _lock(fd)
        if keep_mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, keep_mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        if os.name == "nt":  # Windows cannot rename an open file
            os.close(fd)
            fd = -1
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _fsync_directory(target.parent)
    sweep_stale_temp_files(target)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path.

    On any error the temporary file is removed and the previous content of ``path``, if any, is
    left untouched.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically.

    ``allow_nan=False`` makes a stray NaN or infinity an error instead of writing the non-standard
    tokens ``NaN``/``Infinity``, which strict JSON readers reject.
    """
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
