"""Sweeps: 8 chemotaxis points of the book preset, serially and on a LocalCluster of 2 workers.

Prints, measured in this one run:

- the speed-up of the LocalCluster over the serial sweep (same points, fresh stores), and that
  both give bit-identical results;
- the start of the cluster (spawning the workers), once per sweep;
- the overhead per point on a running cluster: the sweep's wall time times the workers, less the
  points' own compute time (recorded by each point), over the number of points (scheduling, the
  workers' first imports, writing and reading the entries);
- a fully cached rerun of all points (every point read from the store).

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

import numpy as np
from distributed import Client

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.book.presets import resolve_parameters
from ntkbook.book.project import Project
from ntkbook.grids import chemotaxis


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
    with tempfile.TemporaryDirectory() as tmp:
        serial_store, dask_store = st.Store(f"{tmp}/serial"), st.Store(f"{tmp}/dask")
        start = time.perf_counter()
        serial = sweep.map(
            cells.experiment, points, client=sweep.SERIAL, store=serial_store, **quiet
        )
        serial_s = time.perf_counter() - start
        start = time.perf_counter()
        cluster = sweep.local_cluster(args.workers)
        client = Client(cluster)
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        parallel = sweep.map(cells.experiment, points, client=client, store=dask_store, **quiet)
        map_s = time.perf_counter() - start
        client.close()
        cluster.close()
        dask_s = startup_s + map_s
        compute_s = _compute_seconds(dask_store)
        start = time.perf_counter()
        cached = sweep.map(cells.experiment, points, store=dask_store, **quiet)
        cached_s = time.perf_counter() - start
        assert cached.computed == 0 and cached.from_store == len(points)
        identical = all(_identical(a, b) for a, b in zip(serial, parallel, strict=True))
        overhead = (map_s * args.workers - compute_s) / len(points)
        serial_point_s = _compute_seconds(serial_store) / len(points)
        print(f"serial                     {serial_s:8.1f} s  (baseline)")
        print(
            f"LocalCluster({args.workers} workers)    {dask_s:8.1f} s  "
            f"speed-up {serial_s / dask_s:.2f}x over serial "
            f"({serial_s / map_s:.2f}x once the cluster runs)"
        )
        print(f"  cluster start              {startup_s:6.1f} s")
        print(
            f"  overhead per point         {overhead:6.2f} s  (points' own compute time "
            f"{compute_s / len(points):.1f} s each on the workers, {serial_point_s:.1f} s serially)"
        )
        print(
            f"cached rerun, all points   {cached_s:8.2f} s  "
            f"({cached_s / serial_s:.4f}x the serial sweep)"
        )
        print(f"serial and Dask results bit-identical: {identical}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
