"""The ``ntkbook`` command line: list, run and build the book's chapters.

Exit codes: 0 success, 1 a chapter or the book build failed, 2 a usage error (unknown chapter,
preset or parameter, bad ``-p`` value; the message lists the valid names).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ntkbook.book.driver import build_book, run_chapter
from ntkbook.book.errors import BookError, UsageError
from ntkbook.book.presets import (
    PRESETS,
    available_presets,
    parse_override,
    read_parameters,
    resolve_parameters,
)
from ntkbook.book.project import Project

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

    build_cmd = commands.add_parser("build", help="run every chapter in _toc.yml, build the HTML")
    _add_root(build_cmd, suppress=True)
    build_cmd.add_argument(
        "--preset",
        default=os.environ.get(PRESET_ENV, "book"),
        help=f"one of {', '.join(PRESETS)} (default: ${PRESET_ENV} or book)",
    )
    build_cmd.add_argument("--force", action="store_true", help="re-execute every chapter")
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ntkbook``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        project = Project.find(args.root)
        if args.command == "list":
            return _list(project, args.json)
        if args.command == "run":
            _check_preset(args.preset)
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
        if args.command == "build":
            _check_preset(args.preset)
            build_book(project, preset=args.preset, force=args.force)
            return 0
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse restricts commands


if __name__ == "__main__":
    sys.exit(main())
