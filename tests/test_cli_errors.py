"""``ntkbook`` turns filesystem errors into one line naming the path, with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ntkbook import cli
from ntkbook.cli import describe_os_error, main

needs_permissions = pytest.mark.skipif(
    os.name == "nt" or os.geteuid() == 0, reason="root ignores directory permissions"
)


@pytest.fixture(autouse=True)
def _no_preset_from_environment(monkeypatch) -> None:
    monkeypatch.delenv("PRESET", raising=False)


def _run_error(root: Path, output_dir: Path, capsys) -> str:
    code = main(["--root", str(root), "run", "good", "--output-dir", str(output_dir)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1, lines
    assert "Traceback" not in captured.err
    assert not list(root.rglob("summary.json"))
    return lines[0]


def test_output_dir_that_is_a_file(book_project, capsys) -> None:
    root = book_project()
    target = root / "taken"
    target.write_text("not a directory")
    line = _run_error(root, target, capsys)
    assert str(target) in line and "not a directory" in line
    assert target.read_text() == "not a directory"


def test_output_dir_under_a_file(book_project, capsys) -> None:
    root = book_project()
    (root / "afile").write_text("x")
    line = _run_error(root, root / "afile" / "out", capsys)
    assert str(root / "afile" / "out") in line
    assert "file" in line


@needs_permissions
def test_output_dir_in_a_read_only_directory(book_project, capsys) -> None:
    root = book_project()
    locked = root / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = _run_error(root, locked / "out", capsys)
        assert str(locked) in line and "not writable" in line
        # a missing chain of parents below it cannot be created either
        line = _run_error(root, locked / "a" / "b" / "out", capsys)
        assert str(locked) in line
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            PermissionError(13, "Permission denied", "/data/executed/good/summary.json"),
            "error: /data/executed/good/summary.json: permission denied",
        ),
        (
            OSError(18, "Invalid cross-device link", "/a/.good.link", None, "/b/good"),
            "error: /a/.good.link -> /b/good: invalid cross-device link",
        ),
        (OSError(28, "No space left on device"), "error: no space left on device"),
    ],
)
def test_any_os_error_of_a_run_is_one_line_with_exit_code_2(
    book_project, capsys, monkeypatch, error, line
) -> None:
    root = book_project()

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "run_chapter", fail)
    monkeypatch.setattr(cli, "build_book", fail)
    assert main(["--root", str(root), "run", "good"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert main(["--root", str(root), "build"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_describe_os_error_is_one_line() -> None:
    assert describe_os_error(OSError("two\nlines")) == "two lines"
    assert describe_os_error(FileExistsError(17, "File exists", b"/x")) == "/x: file exists"


def test_console_entry_point_has_no_traceback_for_a_file_as_output_dir(book_project) -> None:
    root = book_project()
    (root / "taken").write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "ntkbook.cli", "--root", str(root), "run", "good"]
        + ["--output-dir", str(root / "taken")],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert str(root / "taken") in done.stderr


# --- ntkbook sweep and ntkbook store ------------------------------------------------------------

from ntkbook import store as results_store  # noqa: E402
from ntkbook import sweep  # noqa: E402


@results_store.experiment("tests.cli_errors.picky")
def picky(p):
    if p["x"] == 2:
        raise ValueError("x = 2 is not allowed here")
    return {"x": p["x"]}


def picky_grid(parameters):
    return [sweep.Grid(picky, [{"x": i} for i in range(parameters["n"])])]


def test_sweep_of_a_chapter_without_a_grid_names_those_with_one(book_project, capsys) -> None:
    root = book_project()
    assert main(["--root", str(root), "sweep", "good", "--serial"]) == 2
    err = capsys.readouterr().err
    assert "chapter 'good' has no sweep grid; chapters with one: " in err and "chemotaxis" in err


def test_a_failing_point_exits_1_with_its_parameters(
    book_project, monkeypatch, tmp_path, capsys
) -> None:
    monkeypatch.setitem(sweep.CHAPTER_GRIDS, "good", f"{__name__}:picky_grid")
    root = book_project()
    url = str(tmp_path / "results")
    assert main(["--root", str(root), "sweep", "good", "--serial", "--store", url]) == 1
    err = capsys.readouterr().err
    assert 'parameters {"x":2}' in err and "ValueError: x = 2 is not allowed here" in err
    assert "1 point(s) of 'good' failed; the others are stored" in err
    assert len(list(results_store.Store(url).entries())) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["store", "ls", "--store", "s3://bucket/x"], "s3fs"),
        (["store", "show", "zz"], "key 'zz' must be 4 to 64 hex digits"),
        (["store", "show", "abcd"], "no entry with key 'abcd'"),
        (["sweep", "good", "--workers", "0"], "--workers must be at least 1, got 0"),
    ],
)
def test_store_and_sweep_usage_errors_exit_2(
    book_project, tmp_path, monkeypatch, capsys, args, message
) -> None:
    monkeypatch.setenv(results_store.STORE_ENV, str(tmp_path / "empty"))
    root = book_project()
    assert main(["--root", str(root), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
