"""Sweeps: many points of one experiment, each computed once and kept in the results store.

:func:`map` takes a registered experiment (:func:`ntkbook.store.experiment`) and a list of
parameter dicts. It looks each point up in the store (:class:`ntkbook.store.Store`), computes only
the missing ones, and returns every result in the order of the points. Execution is Dask's:

- ``client=None`` (the default): a :class:`dask.distributed.LocalCluster` of worker processes
  (:func:`local_cluster`: spawned, one thread each, each process pinned to a core of its own, so
  that ``n`` workers use ``n`` cores and XLA's threads do not fight over them), started only
  when a point is missing and closed afterwards;
- a :class:`dask.distributed.Client`, a cluster object (e.g. :func:`slurm_cluster`) or a
  scheduler address ``"tcp://host:8786"``: points run there;
- ``client="serial"``: in this process, one point after the other.

A worker computes its point and writes the entry into the store itself, so a finished point is
kept even when the client is interrupted or another point kills its worker. Failures are
collected: every other point is still computed and stored, then :class:`SweepFailed` names each
failed point with its parameters and traceback. A rerun computes only the missing points.

A chapter whose points are grouped for speed (a ``vmap`` over seeds) makes each group one point.
For ``ntkbook sweep CHAPTER``, the module ``ntkbook.grids.<chapter>`` defines
``grid(parameters)``, which turns a chapter's parameters into its experiments and points
(:func:`chapter_grid`); the chapter's notebook calls the same function.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ntkbook import store as st
from ntkbook.progress import Progress, track

__all__ = [
    "SERIAL",
    "CHAPTER_GRIDS",
    "GRIDS_PACKAGE",
    "Grid",
    "Results",
    "PointFailure",
    "SweepFailed",
    "map",
    "map_grids",
    "chapter_grid",
    "chapter_grids",
    "local_cluster",
    "worker_environment",
    "slurm_cluster",
]

#: ``client=SERIAL`` computes the points in this process.
SERIAL = "serial"
#: XLA flags of a local CPU worker (appended to ``$XLA_FLAGS``): Eigen's matrix products on the
#: calling thread. XLA sizes its other thread pools by the cores a process may run on, which
#: :func:`pin_to_core` makes one.
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"

#: ``ntkbook sweep CHAPTER``: chapter -> ``"module:function"``, for grids that do not follow the
#: convention of :func:`chapter_grid` (``ntkbook.grids.<chapter>:grid``).
CHAPTER_GRIDS: dict[str, str] = {}
#: The package whose modules, one per chapter, define ``grid(parameters)``.
GRIDS_PACKAGE = "ntkbook.grids"


@dataclass(frozen=True)
class Grid:
    """A chapter's sweep: the registered experiment and its points (parameter dicts)."""

    experiment: Callable[[dict[str, Any]], Any]
    points: list[dict[str, Any]]


class Results(list):
    """The results of :func:`map` in the order of the points, with what the sweep did: the
    ``experiment``'s name, ``keys`` (one per point), ``from_store`` and ``computed`` (counts of
    distinct points) and the store's URL."""

    def __init__(
        self, items, experiment: str, keys, from_store: int, computed: int, store_url: str
    ) -> None:
        super().__init__(items)
        self.experiment = experiment
        self.keys = list(keys)
        self.from_store = from_store
        self.computed = computed
        self.store_url = store_url

    def report(self) -> dict[str, Any]:
        """What ``summary.json`` and the data-as-code page record of this sweep."""
        return {
            "experiment": self.experiment,
            "points": len(self),
            "distinct": len(set(self.keys)),
            "from_store": self.from_store,
            "computed": self.computed,
            "store": self.store_url,
            "keys": self.keys,
        }


@dataclass(frozen=True)
class PointFailure:
    """One point that failed: its parameters, key, the error and its traceback."""

    parameters: dict[str, Any]
    key: str
    error: str
    traceback: str


@dataclass
class SweepFailed(RuntimeError):
    """Some points failed; all others were computed and stored."""

    experiment: str
    failures: list[PointFailure]
    stored: int = 0
    total: int = 0
    message: str = field(init=False, default="")

    def __post_init__(self) -> None:
        lines = [
            f"{len(self.failures)} of {self.total} point(s) of {self.experiment!r} failed "
            f"({self.stored} stored; a rerun computes only the missing ones):"
        ]
        for failure in self.failures:
            lines.append(f"- parameters {st.prov.canonical_json(failure.parameters)}")
            lines.append(f"  key {failure.key[:16]}: {failure.error}")
            lines.extend(f"    {line}" for line in failure.traceback.rstrip().splitlines())
        self.message = "\n".join(lines)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- workers


def worker_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables of a local worker process: Eigen and BLAS on one thread, no
    preallocation of GPU memory.

    Every variable of ``base`` (default ``os.environ``) is kept (the JAX compilation cache
    directory among them); ``XLA_FLAGS`` gains :data:`SINGLE_THREAD_XLA_FLAGS`.
    """
    base = os.environ if base is None else base
    flags = " ".join(part for part in (base.get("XLA_FLAGS", ""), SINGLE_THREAD_XLA_FLAGS) if part)
    # A GPU shared by several workers: each takes memory as it needs it, not 75% up front.
    env = {"XLA_FLAGS": flags, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = "1"
    return env


def pin_to_core(index: int) -> int | None:
    """Pin every thread of this process (and so every thread it starts later, XLA's among them)
    to one core: the ``index``-th (modulo their number) of the cores it may run on. Returns the
    core, or ``None`` where the system cannot pin (not Linux).

    A CPU worker of :func:`local_cluster` computes points fastest on a core of its own: XLA's
    intra-op threads, spread over every core, cost more than they gain for the small programs
    of these sweeps and compete with the other workers.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except (AttributeError, OSError):
        return None
    core = allowed[index % len(allowed)]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(tid, {core})
    return core


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each worker process of :func:`local_cluster` as it starts
    (before it computes a point): :func:`pin_to_core` by the worker's number."""
    name = worker.name
    index = name if isinstance(name, int) else int.from_bytes(str(name).encode()[-4:], "big")
    pin_to_core(index)


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_cluster(n_workers: int | None = None, allowed_failures: int = 1):
    """A :class:`~dask.distributed.LocalCluster` for sweeps on this machine.

    ``n_workers`` spawned worker processes (default: one per core), one thread each, with
    :func:`worker_environment`, each pinned to a core of its own (:func:`dask_setup`, wrapping
    around when there are more workers than cores); no dashboard. Each worker holds one point
    at a time (the others wait at the scheduler), and a point whose worker dies is retried on
    another worker ``allowed_failures`` times before it is reported as failed.

    Raises:
        ValueError: ``n_workers`` is not a positive integer.
    """
    import dask
    from distributed import LocalCluster

    n = default_workers() if n_workers is None else n_workers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    settings = {
        "distributed.worker.multiprocessing-method": "spawn",
        "distributed.scheduler.allowed-failures": allowed_failures,
        # One task on a worker at a time: a worker that dies takes no queued point with it.
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        return LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=worker_environment(),
            preload=[__name__],  # each worker runs dask_setup as it starts: a core of its own
        )


def slurm_cluster(
    *,
    cores: int = 8,
    memory: str = "64GB",
    gpus: int = 1,
    walltime: str = "04:00:00",
    queue: str | None = None,
    account: str | None = None,
    jax_cache_dir: str = "$HOME/.cache/ntkbook/jax",
    store_url: str | None = None,
    python: str | None = None,
    **kwargs: Any,
):
    """A :class:`dask_jobqueue.SLURMCluster` for sweeps on HPC: one worker per job, one GPU each.

    Each job asks SLURM for ``cores`` CPUs, ``memory`` and ``gpus`` GPUs (``--gres=gpu:N``) for
    ``walltime``; the worker runs one point at a time (one thread) with
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX takes GPU memory as it needs it),
    ``JAX_COMPILATION_CACHE_DIR`` on a shared file system (one compilation serves every job) and
    ``NTKBOOK_STORE`` (default: this process's store). Nothing is submitted until
    ``cluster.scale(jobs=N)`` or ``cluster.adapt(...)``; ``cluster.job_script()`` shows the script.
    Needs the ``cluster`` extra: ``pip install 'ntkbook[cluster]'``.

    Raises:
        ImportError: dask-jobqueue is not installed (the message names the extra).
        ValueError: non-positive ``cores`` or negative ``gpus``.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise ImportError(
            "slurm_cluster needs dask-jobqueue: pip install 'ntkbook[cluster]'"
        ) from err
    if not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be an integer >= 1, got {cores!r}")
    if not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"gpus must be an integer >= 0, got {gpus!r}")
    store_url = store_url or st.default_url()
    prologue = [
        "export XLA_PYTHON_CLIENT_PREALLOCATE=false",
        f"export JAX_COMPILATION_CACHE_DIR={jax_cache_dir}",
        f"export {st.STORE_ENV}={store_url}",
        *kwargs.pop("job_script_prologue", []),
    ]
    directives = [f"--gres=gpu:{gpus}"] if gpus else []
    directives += kwargs.pop("job_extra_directives", [])
    return SLURMCluster(
        cores=1,  # threads of the Dask worker: one point at a time
        processes=1,
        job_cpu=cores,
        memory=memory,
        walltime=walltime,
        queue=queue,
        account=account,
        job_extra_directives=directives,
        job_script_prologue=prologue,
        python=python or sys.executable,
        **kwargs,
    )


@functools.cache
def _imported_code() -> dict[str, Any]:
    # Hashed once per process, near the time it imported ntkbook: the code it actually runs.
    return st.code_fingerprint()


def _check_worker_code(fingerprint: Mapping[str, Any]) -> None:
    mine = _imported_code()
    if mine["code"] != fingerprint["code"]:
        raise RuntimeError(
            "this worker runs other ntkbook code than the client that keyed the point "
            f"(package hash {mine['code'][:12]} here, {fingerprint['code'][:12]} there)"
        )


def compute_point(
    fn: Callable[[dict[str, Any]], Any],
    name: str,
    key: str,
    parameters: dict[str, Any],
    store_url: str,
    fingerprint: dict[str, Any],
    check_code: bool = True,
) -> str:
    """Compute one point and write its entry into the store (runs on a worker); returns the key.

    With ``check_code`` (on a worker), a worker whose package code differs from the code that
    keyed the point refuses it: its result would be stored under a key it does not belong to.
    """
    if check_code:
        _check_worker_code(fingerprint)
    started = time.perf_counter()
    result = fn(dict(parameters))
    if "jax" in sys.modules:  # JAX dispatches asynchronously: time the work, not the dispatch
        sys.modules["jax"].block_until_ready(result)
    provenance = {
        **st.run_provenance(),
        "worker": _worker_address(),
        "wall_time_s": time.perf_counter() - started,
        "computed_at": st.now_utc(),
    }
    meta = {
        "experiment": name,
        "key": key,
        "parameters": parameters,
        "fingerprint": fingerprint,
        "provenance": provenance,
    }
    st.Store(store_url).put(name, key, result, meta)
    return key


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


# --------------------------------------------------------------------------- the sweep


def _experiment(experiment: str | Callable) -> tuple[str, Callable]:
    if isinstance(experiment, str):
        fn = st.get_experiment(experiment)
    else:
        fn = experiment
    name = getattr(fn, st.NAME_ATTRIBUTE, None)
    if name is None or st.registered().get(name) is not fn:
        raise st.StoreError(
            f"{getattr(fn, '__qualname__', fn)!r} is not a registered experiment; register it "
            "with @ntkbook.store.experiment(NAME)"
        )
    return name, fn


def _connect(client: Any):
    """(client, close) for ``client``: a Client as it is, a cluster or an address connected."""
    from distributed import Client

    if isinstance(client, Client):
        return client, False
    if isinstance(client, str):
        return Client(client), True
    if hasattr(client, "scheduler_address"):
        return Client(client), True
    raise TypeError(
        f"client must be None, {SERIAL!r}, a scheduler address, a Client or a cluster; got "
        f"{type(client).__name__}"
    )


@dataclass
class _Job:
    """One grid of a sweep: its experiment, points, keys and the points missing from the store."""

    name: str
    fn: Callable
    points: list[dict[str, Any]]
    keys: list[str]
    missing: dict[str, dict[str, Any]]


def _job(experiment: str | Callable, points, store: st.Store, fingerprint) -> _Job:
    name, fn = _experiment(experiment)
    points = [dict(point) for point in points]
    keys = [st.make_key(name, point, fingerprint) for point in points]
    unique = dict(zip(keys, points, strict=True))
    missing = {key: point for key, point in unique.items() if not store.contains(name, key)}
    return _Job(name, fn, points, keys, missing)


def _sweep(
    grids: Sequence[tuple[str | Callable, Sequence[Mapping[str, Any]]]],
    client: Any,
    store: st.Store | str | None,
    workers: int | None,
    progress: Progress,
    log: Callable[[str], None] | None,
) -> list[Results]:
    """The results of every (experiment, points) grid; all missing points are computed together
    (on one cluster, in one queue), so a worker never waits for another grid to finish."""
    store = store if isinstance(store, st.Store) else st.Store(store)
    log = log or _stderr
    fingerprint = st.code_fingerprint()
    jobs = [_job(experiment, points, store, fingerprint) for experiment, points in grids]
    for job in jobs:
        n_unique = len(set(job.keys))
        log(
            f"sweep {job.name}: {len(job.points)} point(s), {n_unique - len(job.missing)} from "
            f"the store {store.url}, {len(job.missing)} to compute"
        )
    missing = [(job, key) for job in jobs for key in job.missing]
    failures: list[tuple[_Job, PointFailure]] = []
    if missing:
        started = time.perf_counter()
        description = ", ".join(dict.fromkeys(job.name for job, _ in missing))
        if client == SERIAL:
            failures = _run_serial(missing, store, fingerprint, description, progress)
        else:
            failures = _run_dask(
                missing, store, fingerprint, client, workers, description, progress
            )
        log(
            f"sweep {description}: computed {len(missing) - len(failures)} point(s) in "
            f"{time.perf_counter() - started:.1f} s"
        )
    if failures:
        failed = [job for job in jobs if any(j is job for j, _ in failures)]
        raise SweepFailed(
            ", ".join(job.name for job in failed),
            [failure for _, failure in failures],
            stored=sum(len(set(job.keys)) for job in failed) - len(failures),
            total=sum(len(set(job.keys)) for job in failed),
        )
    results = []
    for job in jobs:
        loaded: dict[str, Any] = {}
        for key in dict.fromkeys(job.keys):
            entry = store.get(job.name, key)
            if entry is None:
                raise RuntimeError(
                    f"point {key[:16]} of {job.name!r} was computed but is not in {store}"
                )
            loaded[key] = entry.result
        n_unique = len(loaded)
        results.append(
            Results(
                [loaded[key] for key in job.keys],
                job.name,
                job.keys,
                from_store=n_unique - len(job.missing),
                computed=len(job.missing),
                store_url=store.url,
            )
        )
    return results


def map(  # noqa: A001 - sweep.map reads as what it does
    experiment: str | Callable,
    points: Sequence[Mapping[str, Any]],
    *,
    client: Any = None,
    store: st.Store | str | None = None,
    workers: int | None = None,
    progress: Progress = True,
    log: Callable[[str], None] | None = None,
) -> Results:
    """The results of ``experiment`` at every point, in order; only missing points are computed.

    ``experiment`` is a registered experiment function or its name; ``points`` are parameter
    dicts (JSON-able). ``client`` says where missing points run (module docstring); ``workers``
    sizes the default local cluster. ``store`` defaults to :class:`ntkbook.store.Store`'s
    default. ``log`` gets one line of what was reused and computed (default: standard error).

    Raises:
        ntkbook.store.StoreError: an unregistered experiment or parameters that are not JSON.
        SweepFailed: some points failed (all others are stored); it lists each failed point's
            parameters and traceback.
    """
    return _sweep([(experiment, points)], client, store, workers, progress, log)[0]


def map_grids(
    grids: Sequence[Grid],
    *,
    client: Any = None,
    store: st.Store | str | None = None,
    workers: int | None = None,
    progress: Progress = True,
    log: Callable[[str], None] | None = None,
) -> list[Results]:
    """:func:`map` over each grid, all grids' missing points in one queue on one cluster
    (started only when a point is missing): a worker that finishes one grid's points takes the
    next grid's at once. Returns one :class:`Results` per grid, in order.

    Raises:
        SweepFailed: points of any grid failed (all others are stored).
    """
    pairs = [(grid.experiment, grid.points) for grid in grids]
    return _sweep(pairs, client, store, workers, progress, log)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _failure(key: str, point: dict[str, Any], error: BaseException, tb: Any) -> PointFailure:
    text = "".join(traceback.format_tb(tb)) if tb is not None else ""
    return PointFailure(point, key, f"{type(error).__name__}: {error}", text)


def _run_serial(missing, store, fingerprint, description, progress):
    failures = []
    for job, key in track(missing, description=description, progress=progress):
        point = job.missing[key]
        try:
            compute_point(job.fn, job.name, key, point, store.url, fingerprint, check_code=False)
        except Exception as error:  # noqa: BLE001 - reported with its point
            failures.append((job, _failure(key, point, error, error.__traceback__)))
    return failures


def _run_dask(missing, store, fingerprint, client, workers, description, progress):
    from distributed import as_completed

    with _client(client, workers, len(missing)) as connected:
        futures = {
            connected.submit(
                compute_point,
                job.fn,
                job.name,
                key,
                job.missing[key],
                store.url,
                fingerprint,
                key=f"{job.name}-{key[:24]}",
                pure=False,
            ): (job, key)
            for job, key in missing
        }
        failures = []
        try:
            done = as_completed(list(futures))
            for future in track(
                done, total=len(futures), description=description, progress=progress
            ):
                job, key = futures.pop(future)
                # A point whose worker died after it stored its entry is finished: the store,
                # not the worker's memory, holds results.
                if future.status != "finished" and not store.contains(job.name, key):
                    failure = _failure(
                        key, job.missing[key], future.exception(), future.traceback()
                    )
                    failures.append((job, failure))
                # The entry is in the store; released, the task is not recomputed when the
                # worker that holds its (small) return value dies.
                future.release()
        except BaseException:
            # Finished points are already stored by their workers; cancel the rest.
            with contextlib.suppress(Exception):
                connected.cancel(list(futures), force=True)
            raise
        return failures


@contextlib.contextmanager
def _client(client: Any, workers: int | None, n_points: int) -> Iterator[Any]:
    if client is None:
        n = min(workers or default_workers(), n_points)
        cluster = local_cluster(n)
        from distributed import Client

        connected = Client(cluster)
        try:
            yield connected
        finally:
            with contextlib.suppress(Exception):
                connected.close()
            with contextlib.suppress(Exception):
                cluster.close(timeout=20)  # a worker stuck in a point is killed, not awaited
        return
    connected, close = _connect(client)
    try:
        yield connected
    finally:
        if close:
            with contextlib.suppress(Exception):
                connected.close()


# --------------------------------------------------------------------------- chapters


def chapter_grids() -> dict[str, str]:
    """Every chapter with a sweep grid -> its ``"module:function"``."""
    import pkgutil

    package = importlib.import_module(GRIDS_PACKAGE)
    found = {
        info.name: f"{GRIDS_PACKAGE}.{info.name}:grid"
        for info in pkgutil.iter_modules(package.__path__)
    }
    return {**found, **CHAPTER_GRIDS}


def chapter_grid(chapter: str, parameters: Mapping[str, Any]) -> list[Grid]:
    """The sweeps of ``chapter`` at ``parameters`` (its resolved parameters): the function
    ``grid`` of the module ``ntkbook.grids.<chapter>`` (or the one :data:`CHAPTER_GRIDS` names),
    which the chapter's notebook calls too.

    Raises:
        ntkbook.store.StoreError: the chapter has no grid; the message lists those that do.
    """
    grids = chapter_grids()
    target = grids.get(chapter)
    if target is None:
        known = ", ".join(sorted(grids)) or "none"
        raise st.StoreError(f"chapter {chapter!r} has no sweep grid; chapters with one: {known}")
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)(dict(parameters))
