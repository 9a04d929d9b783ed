"""Chapter runs isolated by content (ntkbook.book.runs), the Status page and cell progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ntkbook.book import Project, read_summary, run_chapter
from ntkbook.book.console import CellProgress, format_duration
from ntkbook.book.errors import UsageError
from ntkbook.book.runs import collect_garbage, list_runs, published_target, runs_dir
from ntkbook.book.status import status_markdown, write_status_page

#: A chapter that can be made slow (to be killed while it runs) and reports one claim.
SLOW_CHAPTER = {
    "parameters": "n = 2  # a count [>= 1]\npause = 0.0  # seconds [>= 0]\n",
    "code": [
        "import time\nfrom ntkbook.book import Ledger, write_summary",
        "time.sleep(pause)",
        "ledger = Ledger('slow', statements={'L1': 'n is positive.'})\n"
        "ledger.test('L1', 'n', n, (n - 0.5, n + 0.5), threshold=0.0, direction='above')\n"
        "write_summary({'n': n}, claims=ledger)",
    ],
}


def _files(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _quiet(line: str) -> None:
    pass


def test_presets_switch_without_failing_or_re_executing(book_project) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={"slow.book": "n: 5\n"})
    project = Project(root)
    smoke = run_chapter(project, "slow", preset="smoke", log=_quiet)
    book = run_chapter(project, "slow", preset="book", log=_quiet)
    assert smoke.executed and book.executed
    assert read_summary("slow", root=root)["chapter_results"]["n"] == 5
    lines: list[str] = []
    again = run_chapter(project, "slow", preset="smoke", log=lines.append)
    assert not again.executed and again.run_dir == smoke.run_dir
    assert "published it again" in lines[-1]
    assert read_summary("slow", root=root)["chapter_results"]["n"] == 2
    assert published_target(root / "executed" / "slow") == smoke.run_dir.resolve()
    assert not run_chapter(project, "slow", preset="book", log=_quiet).executed
    assert [run.preset for run in list_runs(runs_dir(root / "executed" / "slow"))] == [
        "smoke",
        "book",
    ]


def test_a_changed_parameter_in_the_same_folder_gives_new_numbers(book_project) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    project = Project(root)
    run_chapter(project, "slow", log=_quiet)
    (root / "executed" / "slow" / "state.json").write_text("left by the first run")
    changed = run_chapter(project, "slow", overrides={"n": 7}, log=_quiet)
    assert changed.executed
    assert read_summary("slow", root=root)["chapter_results"]["n"] == 7
    # the new run starts in its own directory: nothing of the old run's state is in it
    assert not (changed.run_dir / "state.json").exists()


def test_a_killed_forced_run_leaves_the_published_run_byte_identical(book_project) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    published = root / "executed" / "slow"
    run_chapter(Project(root), "slow", log=_quiet)
    before = _files(published)
    process = subprocess.Popen(
        [sys.executable, "-m", "ntkbook.cli", "--root", str(root), "run", "slow", "--force"]
        + ["-p", "pause=60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        partial = runs_dir(published)
        # wait until the kernel is inside the slow cell (papermill has saved the notebook)
        while time.monotonic() < deadline and not any(partial.glob("*.partial/slow.ipynb")):
            time.sleep(0.2)
        time.sleep(2.0)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert any(partial.glob("*.partial/slow.ipynb")), "the forced run never started"
    assert _files(published) == before
    assert read_summary("slow", root=root)["provenance"]["wall_time_s"] > 0


def test_runs_gc_keeps_the_published_run(book_project) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    project = Project(root)
    first = run_chapter(project, "slow", log=_quiet)
    second = run_chapter(project, "slow", overrides={"n": 3}, log=_quiet)
    store = runs_dir(root / "executed" / "slow")
    (store / "0123456789abcdef.partial").mkdir()  # a killed run
    removed = collect_garbage(store, keep={second.run_dir}, dry_run=True)
    assert {run.path for run in removed} == {first.run_dir, store / "0123456789abcdef.partial"}
    assert first.run_dir.exists()
    collect_garbage(store, keep={second.run_dir})
    assert [run.path for run in list_runs(store)] == [second.run_dir]
    assert read_summary("slow", root=root)["chapter_results"]["n"] == 3


def test_an_older_real_output_directory_is_kept_when_a_run_is_published(book_project) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    legacy = root / "executed" / "slow"
    legacy.mkdir(parents=True)
    (legacy / "kernel_records.json").write_text("{}")
    run_chapter(Project(root), "slow", log=_quiet)
    assert legacy.is_symlink()
    moved = list(runs_dir(legacy).glob("legacy-slow-*"))
    assert len(moved) == 1 and (moved[0] / "kernel_records.json").read_text() == "{}"


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_an_output_directory_that_cannot_be_one_is_a_usage_error(book_project, kind) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    blocker = root / "blocker"
    blocker.write_text("a file")
    target = blocker if kind == "file" else blocker / "inside"
    with pytest.raises(UsageError, match=str(target) if kind == "file" else "which is a file"):
        run_chapter(Project(root), "slow", output_dir=target, log=_quiet)


def test_status_page_lists_every_claim_and_counts_verdicts(book_project) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    project = Project(root)
    run_chapter(project, "slow", log=_quiet)
    page = status_markdown(project, ["slow"])
    row = "| [slow](slow/slow.ipynb) | L1 | **reproduced** | 2 [1.5, 2.5] | > 0 | n is positive. "
    assert row + "| smoke |" in page
    assert "| **all chapters** | **1** | **0** | **0** | **0** |" in page
    path = write_status_page(project, ["slow"])
    assert path == root / "executed" / "status.md" and path.read_text() == page


def test_cell_progress_lines_and_heartbeat() -> None:
    lines: list[str] = []
    progress = CellProgress(
        2, lines.append, interactive=False, label="[1/3] x (smoke)", heartbeat_s=0.3
    )
    progress.start()
    progress.cell_start("# a comment\nimport time\n")
    time.sleep(1.0)
    progress.cell_done()
    progress.stop()
    assert any("cell 1/2 still running after" in line and "import time" in line for line in lines)
    assert lines[-1].startswith("[1/3] x (smoke): cell 1/2 done in ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3.21, "3.2 s"), (42.4, "42 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")],
)
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_runs_ls_and_gc_on_the_command_line(book_project, capsys) -> None:
    from ntkbook.cli import main

    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    project = Project(root)
    old = run_chapter(project, "slow", log=_quiet)
    new = run_chapter(project, "slow", overrides={"n": 4}, log=_quiet)
    assert main(["--root", str(root), "runs", "ls"]) == 0
    listing = capsys.readouterr().out
    assert f"{old.run_dir.name}" in listing and "finished" in listing
    assert f"{new.run_dir.name}" in listing and "published" in listing
    assert main(["--root", str(root), "runs", "gc", "--dry-run"]) == 0
    assert f"would delete {old.run_dir.name} (slow, smoke)" in capsys.readouterr().out
    assert old.run_dir.exists()
    assert main(["--root", str(root), "runs", "gc"]) == 0
    assert "deleted 1 run(s)" in capsys.readouterr().out
    assert not old.run_dir.exists() and new.run_dir.exists()
    assert read_summary("slow", root=root)["chapter_results"]["n"] == 4


def test_papermill_does_not_warn_about_rule_comments(book_project, caplog) -> None:
    root = book_project(chapters={"slow": SLOW_CHAPTER}, presets={})
    with caplog.at_level("WARNING"):
        run_chapter(Project(root), "slow", overrides={"n": 3}, log=_quiet)
    messages = [record.getMessage() for record in caplog.records]
    assert not any("Unable to parse" in m or "unknown parameter" in m for m in messages), messages
