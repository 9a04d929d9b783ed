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


# --- ntkbook sweep and ntkbook store ------------------------------------------------------------

from ntkbook import store as results_store  # noqa: E402
from ntkbook import sweep  # noqa: E402


@results_store.experiment("tests.cli.scaled")
def scaled(p):
    if p["x"] < 0:
        raise ValueError(f"negative x {p['x']}")
    return {"y": [p["x"] * 2.0]}


def good_grid(parameters):
    """The test chapter's sweep: n points x = i * scale."""
    points = [{"x": i * parameters["scale"]} for i in range(parameters["n"])]
    return [sweep.Grid(scaled, points)]


@pytest.fixture
def swept_chapter(book_project, monkeypatch, tmp_path):
    monkeypatch.setitem(sweep.CHAPTER_GRIDS, "good", f"{__name__}:good_grid")
    root = book_project()
    return root, str(tmp_path / "results")


def test_sweep_computes_then_reads_a_chapter_grid(swept_chapter, capsys) -> None:
    root, url = swept_chapter
    args = ["--root", str(root), "sweep", "good", "--serial", "--store", url]
    assert main(args) == 0
    assert "good: 3 point(s) of tests.cli.scaled, 0 from the store, 3 computed" in (
        capsys.readouterr().out
    )
    assert main([*args, "-p", "n=4"]) == 0
    assert "good: 4 point(s) of tests.cli.scaled, 3 from the store, 1 computed" in (
        capsys.readouterr().out
    )


def test_store_ls_show_du_and_gc(swept_chapter, capsys) -> None:
    root, url = swept_chapter
    assert main(["--root", str(root), "sweep", "good", "--serial", "--store", url]) == 0
    store = results_store.Store(url)
    stale_meta = {"fingerprint": {"code": "0" * 64, "versions": {}}, "parameters": {"x": 9}}
    store.put("tests.cli.scaled", "f" * 64, {"y": [0.0]}, stale_meta)
    capsys.readouterr()
    assert main(["store", "ls", "--root", str(root), "--store", url]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 4
    assert sorted(row.split()[-1] for row in rows) == ["current"] * 3 + ["stale"]
    current = next(row.split()[0] for row in rows if row.endswith("current"))
    assert main(["store", "show", current[:8], "--root", str(root), "--store", url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["experiment"] == "tests.cli.scaled" and shown["key"].startswith(current)
    assert shown["result"] == {"y": [shown["parameters"]["x"] * 2.0]}
    assert shown["provenance"]["wall_time_s"] >= 0
    assert main(["store", "du", "--root", str(root), "--store", url]) == 0
    assert "tests.cli.scaled                  4 entries" in capsys.readouterr().out
    assert main(["store", "gc", "--dry-run", "--root", str(root), "--store", url]) == 0
    assert "would delete 1 entry" in capsys.readouterr().out
    assert len(list(store.entries())) == 4
    assert main(["store", "gc", "--root", str(root), "--store", url]) == 0
    assert "deleted ffffffffffffffff (tests.cli.scaled, stale)" in capsys.readouterr().out
    assert len(list(store.entries())) == 3


def test_store_defaults_to_the_project(swept_chapter, monkeypatch, capsys) -> None:
    root, _ = swept_chapter
    monkeypatch.delenv(results_store.STORE_ENV, raising=False)
    assert main(["store", "ls", "--root", str(root)]) == 0
    assert f"no entries in {root / results_store.DEFAULT_STORE_DIR}" in capsys.readouterr().out
