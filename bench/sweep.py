"""Sweeps: 8 chemotaxis points of the book preset, serially and on a LocalCluster of 2 workers.

Each point trains its seeds in one jitted program and deploys them, so a process that computes
points first compiles those programs (about 13 s of one core), then runs each point. Two cases
are measured in this one run:

- **cold**: nothing compiled yet. The serial sweep compiles once in this process; each worker of
  the cluster compiles once for itself (in parallel, on its own core).
- **warm compilation cache**: the programs are in JAX's persistent compilation cache, as they are
  for every chapter run after the first (the chapters set ``JAX_COMPILATION_CACHE_DIR``) and on
  a cluster sharing the cache directory the SLURM recipe sets. The workers load the programs the
  cold cluster wrote; the serial sweep reuses the programs already compiled in this process.

For each case it prints the speed-up of the cluster over the serial sweep (same points, fresh
stores) and checks that both give bit-identical results. It also prints the start of the cluster
(spawning the workers), the overhead per point on a running cluster (the sweep's wall time times
the workers, less the points' own compute time recorded by each point, over the number of
points: scheduling, the workers' first imports, writing and reading the entries) and a fully
cached rerun of all points (every point read from the store).

The machine's load average is printed before and after: on a shared machine the ratios are
only as good as the cores that were free. Run it alone (``flock`` on a shared machine)::

    python bench/sweep.py [--points 8] [--workers 2] [--preset book]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from distributed import Client

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.book.presets import resolve_parameters
from ntkbook.book.project import Project
from ntkbook.grids import chemotaxis

#: The environment variable the workers read for JAX's persistent compilation cache.
CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def _identical(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def _compute_seconds(store: st.Store) -> float:
    return sum(info.meta["provenance"]["wall_time_s"] for info in store.entries())


def _on_cluster(experiment, points, store: st.Store, workers: int, quiet) -> tuple:
    """The sweep on a fresh LocalCluster: (results, start-up seconds, map seconds)."""
    start = time.perf_counter()
    cluster = sweep.local_cluster(workers)
    client = Client(cluster)
    startup_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
        results = sweep.map(experiment, points, client=client, store=store, **quiet)
    finally:
        client.close()
        cluster.close()
    return results, startup_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="book")
    args = parser.parse_args()

    project = Project.find(Path(__file__).resolve().parents[1])
    parameters = resolve_parameters(project, project.chapter("chemotaxis"), args.preset)
    cells = chemotaxis.grid(parameters)[0]
    points = cells.points[: args.points]
    print(
        f"{len(points)} chemotaxis.cell points of the {args.preset} preset "
        f"({parameters['n_seeds']} seeds, {parameters['n_updates']} episodes, "
        f"{parameters['deploy_decisions']} deployment decisions each); "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    quiet = dict(progress=False, log=lambda line: None)
    # This process compiles for itself (its programs stay in memory); only the workers use the
    # persistent cache, which starts empty.
    jax.config.update("jax_compilation_cache_dir", None)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = f"{tmp}/jax-cache"
        rows = {}
        for case in ("cold", "warm"):
            serial_store, dask_store = st.Store(f"{tmp}/{case}-serial"), st.Store(f"{tmp}/{case}")
            start = time.perf_counter()
            serial = sweep.map(
                cells.experiment, points, client=sweep.SERIAL, store=serial_store, **quiet
            )
            serial_s = time.perf_counter() - start
            parallel, startup_s, map_s = _on_cluster(
                cells.experiment, points, dask_store, args.workers, quiet
            )
            identical = all(_identical(a, b) for a, b in zip(serial, parallel, strict=True))
            rows[case] = dict(
                serial_s=serial_s,
                startup_s=startup_s,
                map_s=map_s,
                serial_point_s=_compute_seconds(serial_store) / len(points),
                worker_point_s=_compute_seconds(dask_store) / len(points),
                identical=identical,
                store=dask_store,
            )
        start = time.perf_counter()
        cached = sweep.map(cells.experiment, points, store=rows["warm"]["store"], **quiet)
        cached_s = time.perf_counter() - start
        assert cached.computed == 0 and cached.from_store == len(points)

    for case, row in rows.items():
        dask_s = row["startup_s"] + row["map_s"]
        overhead = (row["map_s"] * args.workers - row["worker_point_s"] * len(points)) / len(points)
        title = "cold" if case == "cold" else "warm compilation cache"
        print(f"{title}:")
        print(f"  serial                     {row['serial_s']:8.1f} s  (baseline)")
        print(
            f"  LocalCluster({args.workers} workers)    {dask_s:8.1f} s  "
            f"speed-up {row['serial_s'] / dask_s:.2f}x over serial "
            f"({row['serial_s'] / row['map_s']:.2f}x once the cluster runs)"
        )
        print(f"    cluster start              {row['startup_s']:6.1f} s")
        print(
            f"    overhead per point         {overhead:6.2f} s  (points' own time "
            f"{row['worker_point_s']:.1f} s each on the workers, {row['serial_point_s']:.1f} s "
            "serially, compilation included)"
        )
        print(f"  serial and Dask results bit-identical: {row['identical']}")
    print(
        f"cached rerun, all points   {cached_s:8.2f} s  "
        f"({cached_s / rows['cold']['serial_s']:.4f}x the cold serial sweep)"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
