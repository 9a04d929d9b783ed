"""The "Data as code" page: each chapter's stored points with their provenance, and a worked
example in which a changed parameter computes only the new point."""

from __future__ import annotations

import json

import pytest

from ntkbook import sweep
from ntkbook.book import data_as_code as page
from ntkbook.book.project import Project


@pytest.fixture
def project_with_sweep(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    store = tmp_path / "store"
    points = [{"radius_um": r, "speed_body_lengths": 2.0} for r in (0.5, 0.8)]
    results = sweep.map(
        page.rotational_peclet, points, client=sweep.SERIAL, store=store, progress=False
    )
    chapter = tmp_path / "executed" / "swim"
    chapter.mkdir(parents=True)
    summary = {
        "chapter_results": {"sweeps": [results.report()]},
        "provenance": {"chapter": "swim"},
    }
    (chapter / "summary.json").write_text(json.dumps(summary))
    return Project(tmp_path), results


def test_page_lists_every_point_with_its_varying_parameters_and_provenance(project_with_sweep):
    project, results = project_with_sweep
    text = page.data_as_code_markdown(project, ["swim"])
    assert "### swim: `data_as_code.peclet`" in text
    assert "2 points (2 distinct)" in text and "2 were computed" in text
    assert "Parameters shared by every point: `speed_body_lengths=2.0`." in text
    header = next(line for line in text.splitlines() if line.startswith("| key |"))
    assert header.startswith("| key | radius_um | computed on | device |")
    for key, radius in zip(results.keys, (0.5, 0.8), strict=True):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key[:16]}`"))
        assert f"| {radius} |" in row and "cpu" in row.lower()
    assert "{cite:t}`zills2024zntrack`" in text


def test_worked_example_computes_only_the_changed_point():
    lines = page.worked_example()
    text = "\n".join(lines)
    assert "3 point(s), 0 from the store" in text
    assert "3 point(s), 2 from the store" in text and "1 to compute" in text
    assert "read 2 points from the store and computed 1" in text
    rows = [line for line in lines if line.startswith("| second |")]
    assert [row.endswith("| yes |") for row in rows] == [True, True, False]


def test_a_store_that_lost_its_entries_is_said_so(project_with_sweep, tmp_path):
    project, _ = project_with_sweep
    for path in (tmp_path / "store").rglob("*.npz"):
        path.unlink()
    assert "None of these entries is in the store any more." in page.data_as_code_markdown(
        project, ["swim"]
    )


def test_page_is_written_under_executed(project_with_sweep):
    project, _ = project_with_sweep
    path = page.write_data_as_code_page(project, ["swim"])
    assert path == project.root / "executed" / "data_as_code.md"
    assert path.read_text().startswith("# Data as code\n")
