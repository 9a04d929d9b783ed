"""The book's Status page: every chapter's claims and verdicts, read from its ``summary.json``.

``ntkbook build`` writes ``executed/status.md`` after all chapters have run (it is generated,
never committed) and before Jupyter Book renders; ``_toc.yml`` lists it as ``executed/status``.
The page reads only the published ``summary.json`` files, so a chapter that was skipped as
unchanged appears with the numbers, commit and date of the run that made them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ntkbook.atomic import atomic_write_text
from ntkbook.book.claims import VERDICTS, format_estimate, format_test
from ntkbook.book.console import format_duration
from ntkbook.book.project import EXECUTED_DIR, Project
from ntkbook.book.summary import read_summary

#: The page's path in ``_toc.yml`` (no suffix) and its file name under ``executed/``.
STATUS_DOC = f"{EXECUTED_DIR}/status"
STATUS_FILE = "status.md"

RULE = (
    "Each claim is one sentence of a paper's finding, tested by one statistic that the chapter "
    "computes, with a 95% interval, a threshold and the side of it that the paper claims. The "
    "verdict follows one rule: **reproduced** when the whole interval lies on the claimed side "
    "of the threshold; **not reproduced** when it lies wholly on the other side; "
    "**inconclusive** when it contains the threshold (touching it counts); **not tested** when "
    "the run cannot test the claim, with the reason. No verdict is typed: `write_summary` "
    "refuses one that does not follow from its interval."
)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def status_markdown(project: Project, chapters: list[str]) -> str:
    """The Status page (MyST Markdown) for ``chapters`` in book order."""
    rows = [
        "| chapter | claim | verdict | value [95% interval] | claimed | statement | preset "
        "| wall time | commit | run date |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    counts: Counter[str] = Counter()
    per_chapter: dict[str, Counter[str]] = {}
    for chapter in chapters:
        summary = read_summary(chapter, output_dir=project.default_output_dir(chapter))
        provenance = summary["provenance"]
        git = provenance.get("git", {})
        commit = str(git.get("commit", "unknown"))[:10]
        if git.get("dirty"):
            commit += " (modified)"
        date = str(provenance.get("timestamp", ""))[:10]
        wall = format_duration(provenance["wall_time_s"]) if "wall_time_s" in provenance else ""
        link = f"[{chapter}]({chapter}/{chapter}.ipynb)"
        per_chapter[chapter] = Counter()
        for claim in summary.get("claims", []):
            counts[claim["verdict"]] += 1
            per_chapter[chapter][claim["verdict"]] += 1
            rows.append(
                f"| {link} | {claim['id']} | **{claim['verdict']}** | {format_estimate(claim)} "
                f"| {format_test(claim)} | {_cell(claim['statement'])} "
                f"| {_cell(provenance.get('preset', ''))} | {wall} | `{commit}` | {date} |"
            )
    count_rows = [
        "| chapter | " + " | ".join(VERDICTS) + " |",
        "|---|" + "---|" * len(VERDICTS),
        *(
            f"| {chapter} | " + " | ".join(str(tally[v]) for v in VERDICTS) + " |"
            for chapter, tally in per_chapter.items()
        ),
        "| **all chapters** | " + " | ".join(f"**{counts[v]}**" for v in VERDICTS) + " |",
    ]
    total = sum(counts.values())
    lines = [
        "# Status: claims and verdicts",
        "",
        RULE,
        "",
        f"{total} claims in {len(chapters)} chapters. Each row comes from the chapter's "
        "`summary.json`; the claim's statistic, and the reason for a verdict, are in the "
        'chapter\'s own "Claims and verdicts" table.',
        "",
        *rows,
        "",
        "## Verdicts per chapter",
        "",
        *count_rows,
        "",
    ]
    return "\n".join(lines)


def write_status_page(project: Project, chapters: list[str]) -> Path:
    """Write ``executed/status.md`` (atomically) and return its path.

    Raises:
        FileNotFoundError: a chapter has no ``summary.json``.
        SummaryError: a chapter's ``summary.json`` is not a finished run's.
    """
    path = project.root / EXECUTED_DIR / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, status_markdown(project, chapters))
    return path
