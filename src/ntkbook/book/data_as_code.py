"""The book's "Data as code" page: which stored results each chapter read, and how to reuse them.

``ntkbook build`` writes ``executed/data_as_code.md`` after the chapters have run and before
Jupyter Book renders (generated, never committed; ``_toc.yml`` lists it as
``executed/data_as_code``). The page is made of what the build used:

- for every chapter whose ``summary.json`` records sweeps (:meth:`ntkbook.sweep.Results.report`),
  each point's key, the parameters that vary between its points, and the provenance stored with
  it (where and when it was computed, on which device, how long it took);
- the commands that reuse a colleague's store or recompute one point;
- a worked example, run while the page is written: a small sweep in a temporary store, then the
  same sweep with one parameter changed, so that only the new point is computed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ntkbook.atomic import atomic_write_text
from ntkbook.book.console import format_duration
from ntkbook.book.project import DATA_AS_CODE_NAME, EXECUTED_DIR, Project
from ntkbook.book.summary import read_summary
from ntkbook.store import Store, StoreError, experiment

#: The page's path in ``_toc.yml`` (no suffix) and its file name under ``executed/``.
DATA_AS_CODE_DOC = f"{EXECUTED_DIR}/{DATA_AS_CODE_NAME}"
DATA_AS_CODE_FILE = f"{DATA_AS_CODE_NAME}.md"

INTRO = (
    "{cite:t}`zills2024zntrack` argue that parameters, code "
    "and results belong together: a result is reused wherever its inputs are unchanged, and "
    "recomputed only where they changed. This book follows that idea with two established "
    "tools, [Dask](https://www.dask.org) to run the points of a sweep and "
    "[fsspec](https://filesystem-spec.readthedocs.io) to store them. Every point of a chapter's "
    "sweep is kept in a results store under a key that hashes four things: the experiment's "
    "name, the code of the `ntkbook` package, the locked package versions (`requirements.lock`) "
    "and the parameters. The same key is the same computation, whoever ran it and wherever."
)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.replace("|", "\\|").replace("\n", " ")


def _varying(parameters: list[dict[str, Any]]) -> list[str]:
    """The parameter names whose values differ between points (all of them for one point)."""
    if len(parameters) < 2:
        return sorted(parameters[0]) if parameters else []
    names = sorted({name for point in parameters for name in point})
    return [n for n in names if len({json.dumps(p.get(n), sort_keys=True) for p in parameters}) > 1]


def sweep_section(chapter: str, report: dict[str, Any]) -> list[str]:
    """The rows of one recorded sweep: a point per row, read from the store it names."""
    experiment_name, keys = report.get("experiment"), list(report.get("keys") or [])
    lines = [
        f"### {chapter}: `{experiment_name}`",
        "",
        f"{report.get('points')} points ({report.get('distinct')} distinct); in the run that "
        f"made this book {report.get('from_store')} came from the store and "
        f"{report.get('computed')} were computed. Store: `{report.get('store')}`.",
        "",
    ]
    try:
        store = Store(report.get("store"))
        entries = {key: store.get(experiment_name, key) for key in dict.fromkeys(keys)}
    except (StoreError, OSError, ValueError) as err:
        return [*lines, f"The store cannot be read here ({err}).", ""]
    found = [entry for entry in entries.values() if entry is not None]
    if not found:
        return [*lines, "None of these entries is in the store any more.", ""]
    varying = _varying([entry.parameters for entry in found])
    common = {n: v for n, v in found[0].parameters.items() if n not in varying}
    lines += [
        "Parameters shared by every point: "
        + ", ".join(f"`{n}={_cell(v)}`" for n, v in sorted(common.items()))
        + ".",
        "",
        "| key | " + " | ".join(varying) + " | computed on | device | wall time | computed at "
        "| commit |",
        "|---|" + "---|" * len(varying) + "---|---|---|---|---|",
    ]
    for key, entry in entries.items():
        if entry is None:
            lines.append(f"| `{key[:16]}` | " + " | " * len(varying) + "not in the store |||||")
            continue
        provenance = entry.provenance
        git = provenance.get("git") or {}
        commit = str(git.get("commit", "unknown"))[:10] + (
            " (modified)" if git.get("dirty") else ""
        )
        devices = ", ".join(provenance.get("devices") or []) or "?"
        wall = provenance.get("wall_time_s")
        lines.append(
            f"| `{key[:16]}` | "
            + " | ".join(_cell(entry.parameters.get(n)) for n in varying)
            + f" | {_cell(provenance.get('host', '?'))} | {_cell(devices)} "
            f"| {format_duration(wall) if wall is not None else '?'} "
            f"| {_cell(provenance.get('computed_at', '?'))} | `{commit}` |"
        )
    return [*lines, ""]


def worked_example() -> list[str]:
    """Run a three-point sweep in a temporary store, then change one parameter: the lines that
    show what was reused and what was computed."""
    from ntkbook import sweep

    logged: list[str] = []
    radii = [0.4, 0.7, 1.0]
    with tempfile.TemporaryDirectory() as tmp:
        points = [{"radius_um": r, "speed_body_lengths": 3.0} for r in radii]
        first = sweep.map(
            rotational_peclet,
            points,
            client=sweep.SERIAL,
            store=tmp,
            progress=False,
            log=logged.append,
        )
        changed = [dict(points[0]), dict(points[1]), {**points[2], "radius_um": 1.5}]
        second = sweep.map(
            rotational_peclet,
            changed,
            client=sweep.SERIAL,
            store=tmp,
            progress=False,
            log=logged.append,
        )
    rows = [
        "| sweep | radius (µm) | key | Pe_rot | from the store |",
        "|---|---|---|---|---|",
    ]
    for label, points_of, results in (("first", points, first), ("second", changed, second)):
        reused = set(first.keys) if label == "second" else set()
        for point, key, result in zip(points_of, results.keys, results, strict=True):
            rows.append(
                f"| {label} | {point['radius_um']:g} | `{key[:16]}` | "
                f"{float(result['pe_rot']):.3g} | {'yes' if key in reused else 'no, computed'} |"
            )
    return [
        "## A worked example, run while this page was written",
        "",
        "The registered experiment `data_as_code.peclet` computes the rotational Péclet number "
        "of a sphere (`ntkbook.swarm.analysis.rotational_peclet`). A first sweep over three "
        "radii, then a second one with the last radius changed, both into one fresh store:",
        "",
        "```text",
        *logged,
        "```",
        "",
        *rows,
        "",
        f"The second sweep read {second.from_store} points from the store and computed "
        f"{second.computed}: only the changed point.",
        "",
    ]


@experiment("data_as_code.peclet")
def rotational_peclet(parameters: dict[str, Any]) -> dict[str, Any]:
    """The worked example's experiment: the rotational Péclet number of a sphere at 300 K."""
    from ntkbook.swarm import analysis

    value = analysis.rotational_peclet(
        parameters["radius_um"], parameters["speed_body_lengths"], 300.0, "sphere"
    )
    return {"pe_rot": float(value)}


REUSE = [
    "## Reusing a colleague's results, or recomputing one point",
    "",
    "A store is a directory or any fsspec URL (a cluster file system, or an object store with "
    "its fsspec package installed). Point a run at it, and every point already there is read "
    "instead of computed:",
    "",
    "```bash",
    "ntkbook run chemotaxis --preset book --store /shared/ntkbook-store",
    "NTKBOOK_STORE=/shared/ntkbook-store ntkbook build   # the whole book",
    "ntkbook store ls --store /shared/ntkbook-store       # keys, experiments, hosts",
    "ntkbook store show 1eb907942edf --store /shared/ntkbook-store   # parameters, provenance",
    "```",
    "",
    "A point is reused only under the same code, lock and parameters (`ntkbook store ls` marks "
    "the others *stale*; `ntkbook store gc` deletes them). To recompute one point yourself, "
    "sweep just its cell into a store of your own and compare it with the shared entry:",
    "",
    "```bash",
    "ntkbook sweep chemotaxis --preset book -p shapes=[sphere] -p radii=[0.5] -p speeds=[3.0] \\",
    "    --store ./my-store",
    "```",
    "",
]


def data_as_code_markdown(project: Project, chapters: list[str]) -> str:
    """The page (MyST Markdown) for the published runs of ``chapters``."""
    sections: list[str] = []
    for chapter in chapters:
        try:
            summary = read_summary(chapter, output_dir=project.default_output_dir(chapter))
        except (FileNotFoundError, ValueError):
            continue
        numbers = summary.get("chapter_results", summary)
        for report in numbers.get("sweeps") or []:
            sections += sweep_section(chapter, report)
    if not sections:
        sections = ["No chapter of this build recorded a sweep.", ""]
    lines = [
        "# Data as code",
        "",
        INTRO,
        "",
        "## The results each chapter read",
        "",
        "Each table lists the points of one sweep as the chapter's run recorded them, with the "
        "provenance stored beside each result. Keys are shown by their first 16 hex digits.",
        "",
        *sections,
        *REUSE,
        *worked_example(),
    ]
    return "\n".join(lines)


def write_data_as_code_page(project: Project, chapters: list[str]) -> Path:
    """Write ``executed/data_as_code.md`` (atomically) and return its path."""
    path = project.root / EXECUTED_DIR / DATA_AS_CODE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, data_as_code_markdown(project, chapters))
    return path
