"""The ``ntkbook`` command line: messages, exit codes and option handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ntkbook.cli import build_parser, main


@pytest.fixture(autouse=True)
def _no_preset_from_environment(monkeypatch) -> None:
    # The default preset comes from $PRESET; the tests below assume the built-in defaults.
    monkeypatch.delenv("PRESET", raising=False)


def test_list_shows_chapters_presets_and_parameters(book_project, capsys) -> None:
    root = book_project(presets={"good.book": "n: 5\n", "good.paper": "n: 50\nscale: 0.5\n"})
    assert main(["--root", str(root), "list"]) == 0
    out = capsys.readouterr().out
    assert "good  (notebooks/good.ipynb)" in out
    assert "presets: smoke, book, paper" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("n "))
    assert row.split()[:4] == ["n", "3", "5", "50"]
    assert row.endswith("# how many values")


def test_list_json(book_project, capsys) -> None:
    root = book_project()
    assert main(["list", "--root", str(root), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["chapters"]["good"]
    assert listing["presets"] == {
        "smoke": {"n": 3, "scale": 1.5, "label": "x"},
        "book": {"n": 5, "scale": 1.5, "label": "x"},
    }
    assert listing["parameters"]["scale"] == {"default": 1.5, "comment": "multiplies the values"}


def test_list_reports_a_broken_preset(book_project, capsys) -> None:
    root = book_project(presets={"good.book": "n: 5\nwidth: 3\n"})
    assert main(["--root", str(root), "list"]) == 2
    captured = capsys.readouterr()
    assert "unknown parameter(s) 'width'" in captured.err
    assert "presets: smoke" in captured.out  # the valid presets are still listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown chapter 'nope'; valid chapters: good"),
        (["run", "good", "--preset", "huge"], "'huge'; valid presets: smoke, book, paper"),
        (["run", "good", "--preset", "paper"], "available presets: smoke, book"),
        (["run", "good", "-p", "epochs=3"], "valid parameters: n, scale, label"),
        (["run", "good", "-p", "n=three"], "'n' expects int (default 3), got str 'three'"),
        (["run", "good", "-p", "n"], "override 'n' must have the form name=value"),
        (["build", "--preset", "huge"], "valid presets: smoke, book, paper"),
    ],
)
def test_usage_errors_exit_2_and_name_valid_values(
    book_project, capsys, args: list[str], message: str
) -> None:
    root = book_project()
    assert main(["--root", str(root), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.startswith("error: ")
    assert not (root / "executed").exists()  # nothing ran


def test_root_is_found_from_the_working_directory(book_project, monkeypatch, capsys) -> None:
    root = book_project()
    monkeypatch.chdir(root / "notebooks")
    assert main(["list"]) == 0
    assert "good" in capsys.readouterr().out


def test_missing_root(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 2
    assert "no _toc.yml found" in capsys.readouterr().err
    assert main(["--root", str(tmp_path / "absent"), "list"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_preset_default_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("PRESET", raising=False)
    assert build_parser().parse_args(["run", "x"]).preset == "smoke"
    assert build_parser().parse_args(["build"]).preset == "book"
    monkeypatch.setenv("PRESET", "paper")
    assert build_parser().parse_args(["run", "x"]).preset == "paper"
    assert build_parser().parse_args(["build"]).preset == "paper"


def test_root_before_and_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--root", "a", "list"]).root == "a"
    assert parser.parse_args(["list", "--root", "b"]).root == "b"
    assert parser.parse_args(["list"]).root is None


def test_run_executes_then_skips(book_project, capsys) -> None:
    root = book_project()
    args = ["--root", str(root), "run", "good", "-p", "n=4", "-p", "scale=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "good (smoke): executed in" in out
    # not a terminal: one line per finished code cell (5 cells + the injected parameters)
    assert "good (smoke): cell 6/6 done in" in out
    summary = json.loads((root / "executed" / "good" / "summary.json").read_text())
    assert summary["chapter_results"]["values"] == [0.0, 2.0, 4.0, 6.0]
    assert summary["provenance"]["parameters"] == {"n": 4, "scale": 2.0, "label": "x"}
    assert main(args) == 0
    assert "good (smoke): skipped (unchanged)" in capsys.readouterr().out
    assert main([*args, "--force"]) == 0
    assert "executed in" in capsys.readouterr().out


def test_console_entry_point_exit_codes(book_project) -> None:
    root = book_project()
    ok = subprocess.run(
        [sys.executable, "-m", "ntkbook.cli", "--root", str(root), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "good" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ntkbook.cli", "--root", str(root), "run", "missing"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode == 2
    assert "unknown chapter 'missing'; valid chapters: good" in bad.stderr
