"""The ``ntkbook`` command line: list, run and build the book's chapters; show and prune runs;
compute a chapter's sweep (``sweep``) and show or prune the results store (``store``).

Exit codes: 0 success, 1 a chapter or the book build failed, 2 a usage error (unknown chapter,
preset or parameter, bad ``-p`` value; the message lists the valid names) or a filesystem error
(an output directory that is a file, lies under a file or cannot be written). Every error is one
line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ntkbook.book.console import format_duration
from ntkbook.book.driver import build_book, run_chapter, use_compilation_cache
from ntkbook.book.errors import BookError, UsageError
from ntkbook.book.launch import export_notebooks, github_repository, origin_repository
from ntkbook.book.presets import (
    PRESETS,
    available_presets,
    parse_override,
    read_parameters,
    resolve_parameters,
)
from ntkbook.book.project import EXECUTED_DIR, Project
from ntkbook.book.runs import RUNS_DIR, collect_garbage, list_runs, published_target
from ntkbook.store import DEFAULT_STORE_DIR, STORE_ENV, StoreError

#: Environment variable that sets the default preset (``PRESET=smoke make book``).
PRESET_ENV = "PRESET"


def _add_root(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # The option exists both before and after the sub-command. The sub-command's copy defaults
    # to SUPPRESS so that it does not overwrite a --root given before the sub-command.
    parser.add_argument(
        "--root",
        default=argparse.SUPPRESS if suppress else None,
        help="project root (default: the nearest directory above the cwd with _toc.yml)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ntkbook``."""
    parser = argparse.ArgumentParser(
        prog="ntkbook",
        description="Run the book's chapters with papermill and build the Jupyter Book.",
    )
    _add_root(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    list_cmd = commands.add_parser("list", help="list chapters, presets and parameters")
    _add_root(list_cmd, suppress=True)
    list_cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")

    run_cmd = commands.add_parser("run", help="execute one chapter")
    _add_root(run_cmd, suppress=True)
    run_cmd.add_argument("chapter", help="chapter name (a notebooks/<chapter>.ipynb)")
    run_cmd.add_argument(
        "--preset",
        default=os.environ.get(PRESET_ENV, "smoke"),
        help=f"one of {', '.join(PRESETS)} (default: ${PRESET_ENV} or smoke)",
    )
    run_cmd.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter; VALUE is read as YAML (3, 1e-3, [8,16], relu)",
    )
    run_cmd.add_argument(
        "--output-dir", help="where the executed notebook goes (default: executed/<chapter>/)"
    )
    run_cmd.add_argument("--force", action="store_true", help="execute even if unchanged")
    _add_store(run_cmd)

    build_cmd = commands.add_parser("build", help="run every chapter in _toc.yml, build the HTML")
    _add_root(build_cmd, suppress=True)
    build_cmd.add_argument(
        "--preset",
        default=os.environ.get(PRESET_ENV, "book"),
        help=f"one of {', '.join(PRESETS)} (default: ${PRESET_ENV} or book)",
    )
    build_cmd.add_argument("--force", action="store_true", help="re-execute every chapter")
    build_cmd.add_argument(
        "--repository-url",
        help="GitHub repository for Colab launch and repository buttons (default: the origin "
        "remote when it is on GitHub; without one the book has no buttons)",
    )

    export_cmd = commands.add_parser(
        "export-notebooks",
        help="copy the executed notebooks, with a Colab install cell, for the notebooks branch",
    )
    _add_root(export_cmd, suppress=True)
    export_cmd.add_argument("destination", help="folder to write executed/<chapter>/*.ipynb into")
    export_cmd.add_argument(
        "--repository-url", help="GitHub repository to install ntkbook from (default: origin)"
    )

    runs_cmd = commands.add_parser("runs", help="show or prune the chapters' run directories")
    _add_root(runs_cmd, suppress=True)
    runs_actions = runs_cmd.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    runs_ls = runs_actions.add_parser("ls", help="list every run in executed/.runs")
    _add_root(runs_ls, suppress=True)
    runs_gc = runs_actions.add_parser(
        "gc", help="delete every run that is not published (unfinished ones too)"
    )
    _add_root(runs_gc, suppress=True)
    runs_gc.add_argument("--dry-run", action="store_true", help="only list what would go")

    sweep_cmd = commands.add_parser(
        "sweep", help="compute a chapter's grid into the results store (only missing points)"
    )
    _add_root(sweep_cmd, suppress=True)
    sweep_cmd.add_argument("chapter", help="a chapter with a sweep grid (ntkbook.sweep)")
    sweep_cmd.add_argument(
        "--preset",
        default=os.environ.get(PRESET_ENV, "smoke"),
        help=f"one of {', '.join(PRESETS)} (default: ${PRESET_ENV} or smoke)",
    )
    sweep_cmd.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="as for run"
    )
    where = sweep_cmd.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786"
    )
    where.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: one per core)"
    )
    where.add_argument(
        "--serial", action="store_true", help="compute the points in this process, one by one"
    )
    _add_store(sweep_cmd)

    store_cmd = commands.add_parser("store", help="show or prune the results store")
    _add_root(store_cmd, suppress=True)
    store_actions = store_cmd.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    store_ls = store_actions.add_parser("ls", help="list every entry")
    store_show = store_actions.add_parser("show", help="one entry's parameters and provenance")
    store_show.add_argument("key", help="the key, or its first digits (at least 4)")
    store_gc = store_actions.add_parser(
        "gc", help="delete entries that this checkout's code and lock can no longer reach"
    )
    store_gc.add_argument("--dry-run", action="store_true", help="only list what would go")
    store_du = store_actions.add_parser("du", help="entries and bytes per experiment")
    for action in (store_ls, store_show, store_gc, store_du):
        _add_root(action, suppress=True)
        _add_store(action)
    return parser


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"results store: a path or fsspec URL (default: ${STORE_ENV} or {DEFAULT_STORE_DIR})",
    )


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")


def _format(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


def _list(project: Project, as_json: bool) -> int:
    chapters = project.chapters()
    errors: list[str] = []
    listing: dict[str, Any] = {}
    for name, chapter in chapters.items():
        try:
            parameters = read_parameters(chapter.notebook)
        except UsageError as err:
            errors.append(str(err))
            continue
        presets: dict[str, dict[str, Any]] = {}
        for preset in available_presets(project, chapter):
            try:
                presets[preset] = resolve_parameters(project, chapter, preset)
            except UsageError as err:
                errors.append(str(err))
        listing[name] = {
            "notebook": str(chapter.notebook.relative_to(project.root)),
            "parameters": {
                p.name: {"default": p.default, "comment": p.comment} for p in parameters.values()
            },
            "presets": presets,
        }
    if as_json:
        print(json.dumps({"chapters": listing}, indent=2))
    elif not listing and not errors:
        print(f"no chapters: {project.notebook_dir} has no *.ipynb")
    else:
        for name, entry in listing.items():
            _print_chapter(name, entry)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 2 if errors else 0


def _print_chapter(name: str, entry: dict[str, Any]) -> None:
    presets = entry["presets"]
    print(f"{name}  ({entry['notebook']})")
    print(f"  presets: {', '.join(presets) or 'none valid'}")
    header = ["parameter", *presets]
    rows = [
        [param, *(_format(values[param]) for values in presets.values())]
        for param in entry["parameters"]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    comments = [entry["parameters"][param]["comment"] for param in entry["parameters"]]
    for row, comment in zip([header, *rows], ["", *comments], strict=True):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(f"  {line}  # {comment}" if comment else f"  {line}".rstrip())
    print()


def _published_runs(project: Project) -> set[Path]:
    """The run directories that ``executed/<chapter>`` links point to."""
    published = set()
    for name in project.chapters():
        target = published_target(project.default_output_dir(name))
        if target is not None:
            published.add(target)
    return published


def _runs(project: Project, action: str, dry_run: bool) -> int:
    store = project.root / EXECUTED_DIR / RUNS_DIR
    published = _published_runs(project)
    if action == "ls":
        runs = list_runs(store)
        if not runs:
            print(f"no runs in {store}")
            return 0
        print(f"{'run':<38} {'chapter':<22} {'preset':<7} {'wall time':>12} {'size':>9}  state")
        for run in runs:
            state = (
                "published"
                if run.path.resolve() in published
                else ("finished" if run.finished else "unfinished")
            )
            wall = format_duration(run.wall_time_s) if run.wall_time_s is not None else "-"
            print(
                f"{run.name:<38} {run.chapter or '-':<22} {run.preset or '-':<7} {wall:>12} "
                f"{run.size_bytes() / 2**20:>7.1f} M  {state}"
            )
        return 0
    sizes = [run.size_bytes() for run in list_runs(store) if run.path.resolve() not in published]
    removed = collect_garbage(store, keep=published, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for run in removed:
        print(f"{verb} {run.name} ({run.chapter or 'unfinished'}, {run.preset or '-'})")
    freed = sum(sizes) / 2**20
    print(f"{verb} {len(removed)} run(s), {freed:.1f} MiB; kept {len(published)} published")
    return 0


def _open_store(project: Project, url: str | None):
    from ntkbook.store import Store

    if url is None and not os.environ.get(STORE_ENV):
        url = str(project.root / DEFAULT_STORE_DIR)
    return Store(url)


def _sweep(project: Project, args: argparse.Namespace) -> int:
    from ntkbook import sweep

    _check_preset(args.preset)
    overrides = dict(parse_override(text) for text in args.param)
    parameters = resolve_parameters(project, project.chapter(args.chapter), args.preset, overrides)
    store = _open_store(project, getattr(args, "store", None))
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    client = sweep.SERIAL if args.serial else args.scheduler
    grids = sweep.chapter_grid(args.chapter, parameters)
    use_compilation_cache(project)  # local workers compile a program once per machine
    try:
        results = sweep.map_grids(
            grids, client=client, store=store, workers=args.workers, log=print
        )
    except sweep.SweepFailed as err:
        print(str(err), file=sys.stderr)
        raise BookError(
            f"{len(err.failures)} point(s) of {args.chapter!r} failed; the others are stored, "
            "a rerun computes only the missing ones"
        ) from None
    for grid, done in zip(grids, results, strict=True):
        print(
            f"{args.chapter}: {len(done)} point(s) of {grid.experiment.experiment_name}, "
            f"{done.from_store} from the store, {done.computed} computed"
        )
    return 0


def _fingerprint_state(meta: dict[str, Any] | None, current: dict[str, Any]) -> str:
    if meta is None:
        return "unreadable"
    fingerprint = meta.get("fingerprint") or {}
    return "current" if fingerprint == current else "stale"


def _store(project: Project, args: argparse.Namespace) -> int:
    from ntkbook.store import code_fingerprint

    store = _open_store(project, getattr(args, "store", None))
    action = args.store_command
    if action == "show":
        info = store.find(args.key)
        if info.meta is None:
            raise UsageError(f"entry {info.path} cannot be read")
        entry = store.load(info)
        shown = dict(info.meta)
        shown["path"] = info.path
        shown["size_bytes"] = info.size_bytes
        shown["result"] = _outline(entry.result)
        print(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    current = code_fingerprint()
    entries = list(store.entries())
    if action == "ls":
        if not entries:
            print(f"no entries in {store.url}")
            return 0
        print(f"{'key':<16} {'experiment':<24} {'wall time':>10} {'size':>9}  {'host':<20} state")
        for info in entries:
            provenance = (info.meta or {}).get("provenance") or {}
            wall = provenance.get("wall_time_s")
            print(
                f"{info.key[:16]} {info.experiment:<24} "
                f"{format_duration(wall) if wall is not None else '-':>10} "
                f"{info.size_bytes / 2**10:>7.1f} K  {provenance.get('host', '-'):<20} "
                f"{_fingerprint_state(info.meta, current)}"
            )
        return 0
    if action == "du":
        totals: dict[str, list[int]] = {}
        for info in entries:
            count_size = totals.setdefault(info.experiment, [0, 0])
            count_size[0] += 1
            count_size[1] += info.size_bytes
        for name, (count, size) in sorted(totals.items()):
            print(f"{name:<28} {count:>6} entries {size / 2**20:>9.2f} MiB")
        size = sum(info.size_bytes for info in entries)
        print(f"{'total':<28} {len(entries):>6} entries {size / 2**20:>9.2f} MiB  ({store.url})")
        return 0
    # gc: entries keyed by other code or other versions can never be found by this checkout
    stale = [info for info in entries if _fingerprint_state(info.meta, current) != "current"]
    verb = "would delete" if args.dry_run else "deleted"
    for info in stale:
        if not args.dry_run:
            store.remove(info)
        print(
            f"{verb} {info.key[:16]} ({info.experiment}, {_fingerprint_state(info.meta, current)})"
        )
    freed = sum(info.size_bytes for info in stale) / 2**20
    print(
        f"{verb} {len(stale)} entr{'y' if len(stale) == 1 else 'ies'}, {freed:.2f} MiB; "
        f"kept {len(entries) - len(stale)} current"
    )
    return 0


def _outline(value: Any) -> Any:
    """A result with every array replaced by its dtype and shape (for ``store show``)."""
    if isinstance(value, dict):
        return {name: _outline(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_outline(item) for item in value]
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"{value.dtype}{list(value.shape)}"
    return value


def describe_os_error(error: OSError) -> str:
    """One line for a filesystem error: the path(s) it concerns and the reason.

    ``PermissionError(13, 'Permission denied', '/x/y')`` -> ``/x/y: permission denied``.
    """
    reason = error.strerror or str(error) or type(error).__name__
    reason = reason[:1].lower() + reason[1:]
    paths = [
        os.fsdecode(p) if isinstance(p, str | bytes | os.PathLike) else str(p)
        for p in (error.filename, error.filename2)
        if p is not None
    ]
    where = " -> ".join(paths)
    line = f"{where}: {reason}" if where else reason
    return " ".join(line.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ntkbook``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        project = Project.find(args.root)
        if args.command == "list":
            return _list(project, args.json)
        if args.command == "run":
            _check_preset(args.preset)
            if getattr(args, "store", None):
                os.environ[STORE_ENV] = args.store  # read by the chapter's kernel
            overrides: dict[str, Any] = {}
            for text in args.param:
                name, value = parse_override(text)
                overrides[name] = value
            run_chapter(
                project,
                args.chapter,
                preset=args.preset,
                overrides=overrides,
                output_dir=args.output_dir,
                force=args.force,
            )
            return 0
        if args.command == "runs":
            return _runs(project, args.runs_command, getattr(args, "dry_run", False))
        if args.command == "sweep":
            return _sweep(project, args)
        if args.command == "store":
            return _store(project, args)
        if args.command == "build":
            _check_preset(args.preset)
            url = args.repository_url or origin_repository(project.root)
            build_book(project, preset=args.preset, force=args.force, repository_url=url)
            return 0
        if args.command == "export-notebooks":
            url = args.repository_url or origin_repository(project.root)
            if url is None:
                raise UsageError(
                    "export-notebooks needs --repository-url (the origin remote is not on GitHub)"
                )
            written = export_notebooks(project, Path(args.destination), github_repository(url))
            print(f"wrote {len(written)} notebook(s) under {args.destination}")
            return 0
    except (UsageError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse restricts commands


if __name__ == "__main__":
    sys.exit(main())
