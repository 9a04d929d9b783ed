"""ntkbook.atomic: permissions, directory fsync, and the sweep of stale temporary files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ntkbook import atomic
from ntkbook.atomic import (
    STALE_AFTER_S,
    atomic_write_json,
    sweep_stale_temp_files,
    write_bytes_atomic,
)

fcntl = pytest.importorskip("fcntl")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_0666_minus_the_umask(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        path = write_bytes_atomic(tmp_path / "result.json", b"{}")
    finally:
        os.umask(previous)
    assert _mode(path) == expected


def test_rewrite_keeps_the_mode_of_the_existing_file(tmp_path):
    path = write_bytes_atomic(tmp_path / "result.json", b"1")
    path.chmod(0o640)
    write_bytes_atomic(path, b"2")
    assert path.read_bytes() == b"2"
    assert _mode(path) == 0o640


def test_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_bytes_atomic(tmp_path / "result.json", b"data")
    assert events == ["fsync file", "replace", "fsync dir"]


def test_failed_rename_keeps_the_old_content_and_no_temporary_file(tmp_path, monkeypatch):
    path = write_bytes_atomic(tmp_path / "result.json", b"old")

    def fail(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert _temp_files(tmp_path) == []


def test_temporary_file_of_a_killed_writer_is_swept_by_the_next_write(tmp_path):
    target = tmp_path / "result.json"
    write_bytes_atomic(target, b"good")
    # A writer killed after the fsync of its temporary file and before the rename.
    script = textwrap.dedent(
        f"""
        import os, signal
        from ntkbook.atomic import write_bytes_atomic
        os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
        write_bytes_atomic({str(target)!r}, b"half")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    left = _temp_files(tmp_path)
    assert len(left) == 1 and left[0].startswith(".result.json.")
    assert target.read_bytes() == b"good"

    write_bytes_atomic(target, b"next")  # the leftover is too young to be swept yet
    assert _temp_files(tmp_path) == left
    _age(tmp_path / left[0], STALE_AFTER_S + 5)
    write_bytes_atomic(target, b"again")
    assert _temp_files(tmp_path) == []
    assert target.read_bytes() == b"again"


def test_sweep_keeps_a_temporary_file_that_a_live_writer_holds(tmp_path):
    target = tmp_path / "result.json"
    busy = tmp_path / ".result.json.abcd1234.tmp"
    busy.write_bytes(b"in progress")
    _age(busy, 10 * STALE_AFTER_S)
    with open(busy, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sweep_stale_temp_files(target) == []
        assert busy.exists()
    assert sweep_stale_temp_files(target) == [busy]
    assert not busy.exists()


def test_sweep_removes_only_this_targets_temporary_file_names(tmp_path):
    target = tmp_path / "result.json"
    others = [
        ".other.json.abcd1234.tmp",  # another target's temporary file
        ".result.json.abc.tmp",  # not the 8-character token
        "result.json.abcd1234.tmp",  # no leading dot
        ".result.json.abcd1234.tmp.keep",
        "result.json",
    ]
    stale = ".result.json.k3_9zq0a.tmp"  # a tempfile.mkstemp name of earlier versions
    for name in [*others, stale]:
        (tmp_path / name).write_bytes(b"x")
        _age(tmp_path / name, 10 * STALE_AFTER_S)
    assert sweep_stale_temp_files(target) == [tmp_path / stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def test_sweep_without_file_locks_waits_for_the_long_age(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "fcntl", None)
    target = tmp_path / "result.json"
    temp = tmp_path / ".result.json.abcd1234.tmp"
    temp.write_bytes(b"x")
    _age(temp, 10 * STALE_AFTER_S)
    assert sweep_stale_temp_files(target) == []
    _age(temp, atomic.STALE_UNLOCKED_AFTER_S + 5)
    assert sweep_stale_temp_files(target) == [temp]


def test_atomic_write_json_refuses_nan_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "summary.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []
