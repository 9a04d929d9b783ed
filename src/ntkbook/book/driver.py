"""Execute chapters with papermill and build the book with Jupyter Book.

A run of one chapter:

1. resolve the effective parameters (parameters cell <- preset <- overrides) and the content hash;
2. skip if the published run (``executed/<chapter>``) carries the same hash, or republish a
   finished run with that hash from the run store (unless ``force``);
3. execute the notebook with papermill in the run's own directory ``executed/.runs/<hash>.partial``
   (so the figures, ``summary.json`` and resumable state it writes stay with that run), printing
   each code cell's progress;
4. check the summary and its claims; tag the parameter cells ``remove-cell``, add provenance to
   the notebook metadata and as a final "Provenance" cell;
5. merge provenance (with the hash) into ``summary.json`` (atomically), rename the run directory
   to a finished run and publish it by an atomic symlink swap (:mod:`ntkbook.book.runs`). A run
   that fails or is killed never touches the published one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntkbook.atomic import atomic_write_json, atomic_write_text
from ntkbook.book.claims import PAPER_CLAIMS
from ntkbook.book.console import CellProgress, format_duration
from ntkbook.book.errors import BookError, BuildFailed, ChapterFailed, SummaryError, UsageError
from ntkbook.book.launch import github_repository, launch_config
from ntkbook.book.presets import resolve_parameters
from ntkbook.book.project import Project
from ntkbook.book.provenance import (
    content_hash,
    git_state,
    package_versions,
    provenance_markdown,
    source_tree_hash,
)
from ntkbook.book.runs import (
    check_output_dir,
    finished_name,
    finished_runs,
    partial_dir,
    previous_wall_time,
    publish,
    published_target,
    runs_dir,
)
from ntkbook.book.status import write_status_page
from ntkbook.book.summary import SUMMARY_FILE, load_summary_file

#: Jupyter kernel the chapters run in; see :func:`check_kernel`.
KERNEL_NAME = "python3"
#: Tag papermill gives the cell it inserts with the effective parameters.
INJECTED_TAG = "injected-parameters"
#: Tag that Jupyter Book (myst-nb) understands as "do not render this cell".
REMOVE_TAG = "remove-cell"
PROVENANCE_TAG = "ntkbook-provenance"
#: Name under which the cell-progress papermill engine is registered.
PROGRESS_ENGINE = "ntkbook"
#: The environment variable (read by JAX) and default directory of the compilation cache.
JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
JAX_CACHE_DIR = ".ntkbook/jax-cache"
#: Cache every program that took at least this long to compile (JAX's default, 1 s, keeps only
#: a few of a chapter's programs: a collective_variables smoke rerun took 94 s instead of 104 s
#: with it, 63 s instead of 97 s with 0.1 s).
JAX_CACHE_MIN_SECONDS_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
JAX_CACHE_MIN_SECONDS = "0.1"

Log = Callable[[str], None]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PapermillParameterWarnings(logging.Filter):
    """Drops papermill's warnings about parsing the parameters cell.

    ntkbook reads and validates the cell itself (:mod:`ntkbook.book.presets`) before papermill
    sees it, and papermill's own parser counts every ``=`` on a line, so a rule comment such as
    ``[>= 1]`` would give an "Unable to parse line" and a "Passed unknown parameter" warning for
    each such parameter of each run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            ("Unable to parse line", "Passed unknown parameter")
        )


for _name in ("papermill", "papermill.translators"):
    logging.getLogger(_name).addFilter(_PapermillParameterWarnings())


def _stdout(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run_chapter`.

    ``output_dir``, ``notebook`` and ``summary`` are the published paths; ``run_dir`` is the run
    directory they resolve to.
    """

    chapter: str
    preset: str
    parameters: dict[str, Any]
    output_dir: Path
    notebook: Path
    summary: Path
    executed: bool
    wall_time_s: float | None
    content_hash: str
    run_dir: Path


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


def _is_cached(run_dir: Path, chapter: str, expected_hash: str) -> bool:
    """``run_dir`` holds a finished run of ``chapter`` with content hash ``expected_hash``."""
    summary_path = run_dir / SUMMARY_FILE
    if not (summary_path.is_file() and (run_dir / f"{chapter}.ipynb").is_file()):
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


def _progress_engine() -> str:
    """Register (once) and name the papermill engine that reports each code cell's progress."""
    from papermill.engines import NBClientEngine, papermill_engines

    if PROGRESS_ENGINE not in papermill_engines._engines:

        class ProgressEngine(NBClientEngine):
            """nbclient execution that calls a :class:`CellProgress` around every code cell."""

            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, **kwargs):
                if progress is not None:
                    start, complete = nb_man.cell_start, nb_man.cell_complete

                    def cell_start(cell, cell_index=None, **options):
                        start(cell, cell_index=cell_index, **options)
                        if cell.get("cell_type") == "code":
                            progress.cell_start(cell.get("source", ""))

                    def cell_complete(cell, cell_index=None, **options):
                        complete(cell, cell_index=cell_index, **options)
                        if cell.get("cell_type") == "code":
                            progress.cell_done()

                    nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

        papermill_engines.register(PROGRESS_ENGINE, ProgressEngine)
    return PROGRESS_ENGINE


def compilation_cache_dir(project: Project) -> Path:
    """JAX's persistent compilation cache for chapter runs: ``$JAX_COMPILATION_CACHE_DIR`` if set,
    else ``<root>/.ntkbook/jax-cache``.

    XLA programs compiled by one chapter run are reused by the next run of the same programs
    (a rerun, nbval then the smoke book, a second preset with the same shapes). The directory
    belongs to this machine and this checkout: compiled programs depend on the CPU or GPU and on
    the jaxlib version, so never share it between machines. ``make clean`` removes it.
    """
    configured = os.environ.get(JAX_CACHE_ENV)
    return Path(configured) if configured else project.root / JAX_CACHE_DIR


def use_compilation_cache(project: Project) -> None:
    """Point JAX's persistent compilation cache (of this process and of every worker it starts)
    at :func:`compilation_cache_dir`, unless the environment already names one."""
    os.environ.setdefault(JAX_CACHE_ENV, str(compilation_cache_dir(project)))
    os.environ.setdefault(JAX_CACHE_MIN_SECONDS_ENV, JAX_CACHE_MIN_SECONDS)


def _code_cells(notebook: Path) -> int:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return sum(cell.cell_type == "code" for cell in nb.cells) + 1  # + papermill's parameters


def run_chapter(
    project: Project,
    chapter: str,
    preset: str = "smoke",
    overrides: dict[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    log: Log = _stdout,
    label: str | None = None,
    interactive: bool | None = None,
) -> RunResult:
    """Execute one chapter in its own run directory (or reuse a finished run) and publish it.

    The run executes in ``<store>/<hash>.partial`` (see :mod:`ntkbook.book.runs`), with that
    directory as its working directory, so its figures, ``summary.json`` and resumable state stay
    with it. Only when it has finished is it renamed to a finished run and published at
    ``output_dir`` by an atomic symlink swap; a failure or a kill leaves the published run as it
    was.

    Args:
        project: the book project.
        chapter: chapter name, e.g. ``"ntk_methods"``.
        preset: ``smoke``, ``book`` or ``paper``.
        overrides: parameter values that win over the preset.
        output_dir: the published path: a link to the run's directory, which holds the executed
            notebook, its figures and ``summary.json``; default ``<root>/executed/<chapter>``.
            The run store is ``.runs/`` beside it.
        force: execute even if a finished run with the same content hash exists.
        log: receives the progress lines.
        label: prefix of the lines (default ``"<chapter> (<preset>)"``; the build adds ``[k/n]``).
        interactive: redraw one status line instead of printing a line per cell; default: when
            standard output is a terminal.

    Raises:
        UsageError: unknown chapter, preset or parameter (the message lists the valid ones), or
            an output directory that cannot be one.
        ChapterFailed: the notebook raised, or did not write its summary and claims.
    """
    info = project.chapter(chapter)
    parameters = resolve_parameters(project, info, preset, overrides)
    versions = package_versions()
    key = content_hash(info.notebook, parameters, preset, source_tree_hash(), versions)
    published = (
        project.default_output_dir(chapter) if output_dir is None else Path(output_dir).absolute()
    )
    check_output_dir(published)
    store = runs_dir(published)
    label = label or f"{chapter} ({preset})"

    def result(run_dir: Path, executed: bool, wall_time: float | None) -> RunResult:
        return RunResult(
            chapter,
            preset,
            parameters,
            published,
            published / f"{chapter}.ipynb",
            published / SUMMARY_FILE,
            executed,
            wall_time,
            key,
            run_dir,
        )

    current = published_target(published)
    if not force and current is not None and _is_cached(current, chapter, key):
        log(f"{label}: skipped (unchanged): {_display(published / f'{chapter}.ipynb')}")
        return result(current, False, None)
    if not force:
        for finished in finished_runs(store, key):
            if _is_cached(finished, chapter, key):
                publish(published, finished)
                log(f"{label}: unchanged since run {finished.name}; published it again")
                return result(finished, False, None)

    check_kernel()
    try:
        work = partial_dir(published, key)
        work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the run directory {str(store)!r}: {err}") from err
    notebook = work / f"{chapter}.ipynb"
    summary_path = work / SUMMARY_FILE
    # A summary left by a killed attempt must not pass for this run's.
    summary_path.unlink(missing_ok=True)
    estimate = previous_wall_time(store, chapter, preset)
    estimate_text = f"; last run took {format_duration(estimate)}" if estimate else ""
    log(f"{label}: executing {_display(info.notebook)} in {_display(work)}{estimate_text}")
    import papermill

    use_compilation_cache(project)
    interactive = sys.stdout.isatty() if interactive is None else interactive
    progress = CellProgress(
        _code_cells(info.notebook), log, interactive, label, estimate_s=estimate
    )
    timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    progress.start()
    try:
        try:
            with _store_for_kernel(project):
                papermill.execute_notebook(
                    str(info.notebook),
                    str(notebook),
                    parameters=parameters,
                    engine_name=_progress_engine(),
                    progress=progress,
                    kernel_name=KERNEL_NAME,
                    cwd=str(work),
                    progress_bar=False,
                    log_output=False,
                    # Every cell has finished and its outputs are saved by now; a graceful
                    # kernel shutdown only adds time and, with ipykernel 7, a spurious
                    # KeyboardInterrupt log.
                    shutdown_kernel="immediate",
                )
        except Exception as err:
            raise _execution_error(chapter, notebook, err) from err
        finally:
            progress.stop()
        wall_time = time.perf_counter() - start
        if not summary_path.is_file():
            raise ChapterFailed(
                f"chapter {chapter!r} ran but wrote no {SUMMARY_FILE}; every chapter must end "
                "with ntkbook.book.write_summary({...}, claims=ledger) holding its headline "
                f"numbers; the executed notebook is {notebook}"
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
    finished = store / finished_name(key)
    os.replace(work, finished)
    publish(published, finished)
    for line in sweep_lines(summary):
        log(f"{label}: {line}")
    ended = dt.datetime.now().strftime("%H:%M:%S")
    log(
        f"{label}: executed in {format_duration(wall_time)}, finished at {ended}: "
        f"{_display(published / f'{chapter}.ipynb')}"
    )
    return result(finished, True, wall_time)


@contextlib.contextmanager
def _store_for_kernel(project: Project) -> Iterator[None]:
    """``$NTKBOOK_STORE`` for the chapter's kernel: the project's results store unless the
    environment (or ``--store``) names one; the kernel's working directory is the run directory,
    so it could not find the project's store itself."""
    from ntkbook.store import DEFAULT_STORE_DIR, STORE_ENV  # the store imports ntkbook.book

    if os.environ.get(STORE_ENV):
        yield
        return
    os.environ[STORE_ENV] = str(project.root / DEFAULT_STORE_DIR)
    try:
        yield
    finally:
        os.environ.pop(STORE_ENV, None)


def sweep_lines(summary: dict[str, Any]) -> list[str]:
    """One line per sweep a chapter recorded in its summary (``"sweeps"``): how many of its
    points came from the results store and how many were computed."""
    lines = []
    numbers = summary.get("chapter_results", summary)
    for report in numbers.get("sweeps") or []:
        if not isinstance(report, dict):
            continue
        lines.append(
            f"sweep {report.get('experiment')}: {report.get('points')} point(s), "
            f"{report.get('from_store')} from the store, {report.get('computed')} computed"
        )
    return lines


def jupyter_book_command(root: Path, config: Path | None = None) -> list[str]:
    """The Jupyter Book 1.x command that builds the HTML book into ``<root>/_build/html``.

    ``-W --keep-going`` turns every Sphinx warning into a failure but reports all of them;
    ``-n`` also flags broken cross-references; ``--all`` rebuilds every page, because an
    incremental build does not repeat the warnings of unchanged pages and could pass falsely.
    Running ``jupyter_book`` through ``sys.executable`` uses this environment's installation
    whatever ``PATH`` says. ``config`` replaces ``<root>/_config.yml`` (the launch-button
    configuration of :func:`ntkbook.book.launch.launch_config`).
    """
    options = ["--config", str(config)] if config is not None else []
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
        *options,
    ]


def build_book(
    project: Project,
    preset: str = "book",
    force: bool = False,
    log: Log = _stdout,
    interactive: bool | None = None,
    repository_url: str | None = None,
) -> Path:
    """Run every chapter of ``_toc.yml`` with ``preset``, write the Status page, build the HTML.

    With a GitHub ``repository_url`` every chapter page gets a Colab launch button, opening its
    executed notebook on the ``notebooks`` branch (see :mod:`ntkbook.book.launch`), and a
    repository button; without one the book has no buttons.

    Each chapter is announced as ``[k/n] chapter (preset)`` with the previous run's wall time as
    an estimate, reports its cells while it runs and ends with its wall time and the clock time.
    Chapters are all attempted even after one fails (the others are then cached for the next
    build), but the Status page and the HTML are built only when every chapter succeeded.

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
    for number, name in enumerate(chapters, start=1):
        label = f"[{number}/{len(chapters)}] {name} ({preset})"
        try:
            run_chapter(
                project,
                name,
                preset=preset,
                force=force,
                log=log,
                label=label,
                interactive=interactive,
            )
        except BookError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            failures.append(name)
    if failures:
        raise BuildFailed(
            f"{len(failures)} of {len(chapters)} chapter(s) failed: {', '.join(failures)}; "
            "the HTML book was not built"
        )
    log(f"all {len(chapters)} chapter(s) ready in {format_duration(time.perf_counter() - start)}")
    try:
        status = write_status_page(project, chapters)
    except (FileNotFoundError, SummaryError) as err:
        raise BuildFailed(f"the Status page could not be written: {err}") from err
    log(f"status page: {_display(status)}")
    from ntkbook.book.data_as_code import write_data_as_code_page  # imports ntkbook.store

    log(f"data as code page: {_display(write_data_as_code_page(project, chapters))}")
    config = None
    if repository_url is not None:
        config = launch_config(project, github_repository(repository_url))
        log(f"launch buttons: Colab and repository buttons for {repository_url}")
    log("rendering the HTML book with jupyter-book ...")
    result = subprocess.run(
        jupyter_book_command(project.root, config), cwd=project.root, check=False
    )
    if result.returncode != 0:
        raise BuildFailed(
            f"jupyter-book build failed with exit code {result.returncode}; "
            "see its warnings and errors above"
        )
    html = project.root / "_build" / "html"
    log(
        f"book built in {format_duration(time.perf_counter() - start)}: "
        f"{_display(html / 'index.html')}"
    )
    return html
