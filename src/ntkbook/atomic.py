"""Atomic file writes: a crash never leaves a half-written result behind.

A reader (the book build, a test, the result cache, a resumed training) must never see a
half-written file: every write goes to a temporary file in the same directory (so the final
rename stays on one file system) and is moved into place with :func:`os.replace`, which is
atomic on POSIX and Windows.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes_atomic", "atomic_write_text", "atomic_write_json"]


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating its folder) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path.

    The parent directory must exist. On any error the temporary file is removed and the previous
    content of ``path``, if any, is left untouched.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically.

    ``allow_nan=False`` makes a stray NaN or infinity an error instead of writing the non-standard
    tokens ``NaN``/``Infinity``, which strict JSON readers reject.
    """
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
