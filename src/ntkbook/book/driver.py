"""Execute chapters with papermill and build the book with Jupyter Book.

A run of one chapter:

1. resolve the effective parameters (parameters cell <- preset <- overrides) and the content hash;
2. skip if ``summary.json`` in the output directory carries the same hash (unless ``force``);
3. delete the old ``summary.json``, execute the notebook with papermill in the output directory
   (so the figures and ``summary.json`` it writes land beside the executed notebook);
4. tag the injected-parameters cell ``remove-cell``, add provenance to the notebook metadata
   and as a final "Provenance" cell;
5. merge provenance (with the hash) into ``summary.json``. This write comes last and is atomic,
   so a ``summary.json`` with a content hash exists only for a run that finished.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntkbook.atomic import atomic_write_json, atomic_write_text
from ntkbook.book.claims import PAPER_CLAIMS
from ntkbook.book.errors import BookError, BuildFailed, ChapterFailed, SummaryError
from ntkbook.book.presets import resolve_parameters
from ntkbook.book.project import Project
from ntkbook.book.provenance import (
    content_hash,
    git_state,
    package_versions,
    provenance_markdown,
    source_tree_hash,
)
from ntkbook.book.summary import SUMMARY_FILE, load_summary_file

#: Jupyter kernel the chapters run in; see :func:`check_kernel`.
KERNEL_NAME = "python3"
#: Tag papermill gives the cell it inserts with the effective parameters.
INJECTED_TAG = "injected-parameters"
#: Tag that Jupyter Book (myst-nb) understands as "do not render this cell".
REMOVE_TAG = "remove-cell"
PROVENANCE_TAG = "ntkbook-provenance"

Log = Callable[[str], None]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _stdout(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run_chapter`."""

    chapter: str
    preset: str
    parameters: dict[str, Any]
    output_dir: Path
    notebook: Path
    summary: Path
    executed: bool
    wall_time_s: float | None
    content_hash: str


def check_kernel(name: str = KERNEL_NAME) -> None:
    """Make sure the Jupyter kernel ``name`` runs this interpreter.

    jupyter_client starts ``sys.executable`` when a kernel spec's command is a bare ``python``/
    ``python3`` (the spec ipykernel installs into every environment), but a spec in the user's
    data directory takes precedence and may name another interpreter, which would run the
    chapters against a different installation of ``ntkbook``.

    Raises:
        BookError: no such kernel, or it starts a different Python.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as err:
        raise BookError(
            f"no Jupyter kernel named {name!r}; install ipykernel into this environment "
            f"({sys.executable} -m pip install ipykernel)"
        ) from err
    command = spec.argv[0] if spec.argv else ""
    major, minor = sys.version_info[:2]
    if command in {"python", f"python{major}", f"python{major}.{minor}"}:
        return
    if Path(command).absolute() == Path(sys.executable).absolute():
        return
    raise BookError(
        f"the Jupyter kernel {name!r} (spec in {spec.resource_dir}) starts {command!r}, not the "
        f"interpreter running ntkbook ({sys.executable}); remove that kernel spec or run "
        f"`{sys.executable} -m ipykernel install --user` to point it at this environment"
    )


def _command(chapter: str, preset: str, overrides: dict[str, Any] | None) -> str:
    """The ``ntkbook run`` command line that reproduces a run."""
    parts = ["ntkbook", "run", chapter, "--preset", preset]
    for name, value in (overrides or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts += ["-p", f"{name}={text}"]
    return shlex.join(parts)


def _is_cached(summary_path: Path, notebook: Path, expected_hash: str) -> bool:
    if not (summary_path.is_file() and notebook.is_file()):
        return False
    try:
        summary = load_summary_file(summary_path)
    except SummaryError:
        return False
    provenance = summary.get("provenance")
    return isinstance(provenance, dict) and provenance.get("content_hash") == expected_hash


def _display(path: Path) -> str:
    """``path`` relative to the cwd when it lies below it (shorter log lines)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _execution_error(chapter: str, notebook: Path, err: Exception) -> ChapterFailed:
    """A :class:`ChapterFailed` that carries the notebook's own traceback."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        traceback = _ANSI.sub("", "\n".join(err.traceback))
        message = (
            f"chapter {chapter!r} failed in cell [{err.exec_count}]: {err.ename}: {err.evalue}\n"
            f"{traceback}\n"
            f"The executed notebook, with the error, is {notebook}"
        )
    else:
        message = f"chapter {chapter!r} could not be executed: {type(err).__name__}: {err}"
    return ChapterFailed(message)


def _check_chapter_claims(chapter: str, summary: dict[str, Any]) -> None:
    """A finished chapter has a "Claims and verdicts" ledger: every claim of its paper, by id."""
    claims = summary.get("claims")
    if not claims:
        raise ChapterFailed(
            f"chapter {chapter!r} wrote no claims; every chapter tests its paper's claims with "
            "ntkbook.book.Ledger and passes it as write_summary({...}, claims=ledger)"
        )
    expected = list(PAPER_CLAIMS.get(chapter, {}))
    found = [claim["id"] for claim in claims]
    if expected and found != expected:
        raise ChapterFailed(
            f"chapter {chapter!r} reported claims {found}, but its paper's claims are {expected} "
            "(ntkbook.book.claims.PAPER_CLAIMS)"
        )


def finalize_notebook(notebook: Path, provenance: dict[str, Any]) -> None:
    """Hide papermill's parameter cells, record provenance in metadata and a final cell.

    Both the ``parameters`` cell and papermill's ``injected-parameters`` cell get ``remove-cell``:
    the first shows the smoke defaults, which the second overrides, so showing either would
    print values that are not (or not all) the ones used. The Provenance table lists the
    effective parameters instead.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if (INJECTED_TAG in tags or "parameters" in tags) and REMOVE_TAG not in tags:
            tags.append(REMOVE_TAG)
    nb.metadata["ntkbook"] = provenance
    cell = nbformat.v4.new_markdown_cell(
        provenance_markdown(provenance), metadata={"tags": [PROVENANCE_TAG]}
    )
    if nb.nbformat_minor < 5:
        # Cell ids exist from nbformat 4.5 on; an older notebook fails validation with one.
        cell.pop("id", None)
    nb.cells.append(cell)
    atomic_write_text(notebook, nbformat.writes(nb))


def run_chapter(
    project: Project,
    chapter: str,
    preset: str = "smoke",
    overrides: dict[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    log: Log = _stdout,
) -> RunResult:
    """Execute one chapter (or skip it when nothing changed) and record its provenance.

    Args:
        project: the book project.
        chapter: chapter name, e.g. ``"ntk_methods"``.
        preset: ``smoke``, ``book`` or ``paper``.
        overrides: parameter values that win over the preset.
        output_dir: where the executed notebook, its figures and ``summary.json`` go; default
            ``<root>/executed/<chapter>/``.
        force: execute even if the content hash is unchanged.
        log: receives one line per chapter ("skipped (unchanged)" or "executed in X s").

    Raises:
        UsageError: unknown chapter, preset or parameter (the message lists the valid ones).
        ChapterFailed: the notebook raised or did not write its summary; no ``summary.json``
            is left in the output directory.
    """
    info = project.chapter(chapter)
    parameters = resolve_parameters(project, info, preset, overrides)
    versions = package_versions()
    key = content_hash(info.notebook, parameters, preset, source_tree_hash(), versions)
    if output_dir is None:
        outdir = project.default_output_dir(chapter)
    else:
        outdir = Path(output_dir).resolve()
    notebook = outdir / f"{chapter}.ipynb"
    summary_path = outdir / SUMMARY_FILE

    if not force and _is_cached(summary_path, notebook, key):
        log(f"{chapter} [{preset}]: skipped (unchanged): {_display(notebook)}")
        return RunResult(
            chapter, preset, parameters, outdir, notebook, summary_path, False, None, key
        )

    check_kernel()
    outdir.mkdir(parents=True, exist_ok=True)
    # The previous run's summary must not survive a run that fails or forgets write_summary.
    summary_path.unlink(missing_ok=True)
    log(f"{chapter} [{preset}]: executing {_display(info.notebook)} ...")
    import papermill

    timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    try:
        try:
            papermill.execute_notebook(
                str(info.notebook),
                str(notebook),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(outdir),
                progress_bar=False,
                log_output=False,
                # Every cell has finished and its outputs are saved by now; a graceful kernel
                # shutdown only adds time and, with ipykernel 7, a spurious KeyboardInterrupt log.
                shutdown_kernel="immediate",
            )
        except Exception as err:
            raise _execution_error(chapter, notebook, err) from err
        wall_time = time.perf_counter() - start
        if not summary_path.is_file():
            raise ChapterFailed(
                f"chapter {chapter!r} ran but wrote no {SUMMARY_FILE}; every chapter must end "
                "with ntkbook.book.write_summary({...}) holding its headline numbers"
            )
        try:
            summary = load_summary_file(summary_path)
        except SummaryError as err:
            raise ChapterFailed(f"chapter {chapter!r}: {err}") from err
        _check_chapter_claims(chapter, summary)
        provenance = {
            "chapter": chapter,
            "preset": preset,
            "parameters": parameters,
            "command": _command(chapter, preset, overrides),
            "git": git_state(project.root),
            "packages": versions,
            "runtime": summary.get("runtime", {}),
            "wall_time_s": round(wall_time, 3),
            "timestamp": timestamp,
            "content_hash": key,
        }
        finalize_notebook(notebook, provenance)
        summary["provenance"] = provenance
        atomic_write_json(summary_path, summary)
    except BaseException:
        summary_path.unlink(missing_ok=True)
        raise
    log(f"{chapter} [{preset}]: executed in {wall_time:.1f} s: {_display(notebook)}")
    return RunResult(
        chapter, preset, parameters, outdir, notebook, summary_path, True, wall_time, key
    )


def jupyter_book_command(root: Path) -> list[str]:
    """The Jupyter Book 1.x command that builds the HTML book into ``<root>/_build/html``.

    ``-W --keep-going`` turns every Sphinx warning into a failure but reports all of them;
    ``-n`` also flags broken cross-references; ``--all`` rebuilds every page, because an
    incremental build does not repeat the warnings of unchanged pages and could pass falsely.
    Running ``jupyter_book`` through ``sys.executable`` uses this environment's installation
    whatever ``PATH`` says.
    """
    return [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(root),
        "--builder",
        "html",
        "--warningiserror",
        "--nitpick",
        "--keep-going",
        "--all",
    ]


def build_book(
    project: Project,
    preset: str = "book",
    force: bool = False,
    log: Log = _stdout,
) -> Path:
    """Run every chapter of ``_toc.yml`` with ``preset``, then build the HTML book.

    Chapters are all attempted even after one fails (the others are then cached for the next
    build), but the HTML is built only when every chapter succeeded.

    Returns:
        The HTML output directory, ``<root>/_build/html``.

    Raises:
        UsageError: ``_toc.yml`` names a chapter without a notebook.
        BuildFailed: a chapter failed, or Jupyter Book exited non-zero (e.g. on a warning).
    """
    chapters = project.toc_chapters()
    for name in sorted(set(project.chapters()) - set(chapters)):
        log(f"{name}: not listed in _toc.yml, not run and not in the book")
    failures: list[str] = []
    start = time.perf_counter()
    for name in chapters:
        try:
            run_chapter(project, name, preset=preset, force=force, log=log)
        except BookError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            failures.append(name)
    if failures:
        raise BuildFailed(
            f"{len(failures)} of {len(chapters)} chapter(s) failed: {', '.join(failures)}; "
            "the HTML book was not built"
        )
    log(f"all {len(chapters)} chapter(s) ready in {time.perf_counter() - start:.1f} s")
    result = subprocess.run(jupyter_book_command(project.root), cwd=project.root, check=False)
    if result.returncode != 0:
        raise BuildFailed(
            f"jupyter-book build failed with exit code {result.returncode}; "
            "see its warnings and errors above"
        )
    html = project.root / "_build" / "html"
    log(f"book built: {_display(html / 'index.html')}")
    return html
