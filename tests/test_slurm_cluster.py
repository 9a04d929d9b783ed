"""The README's SLURM recipe run for real: jobs submitted by ``sweep.slurm_cluster`` compute the
points of a sweep into a shared store.

Needs a SLURM cluster whose partition ``$NTKBOOK_SLURM_PARTITION`` offers a GPU (GRES) per job;
``tests/local_slurm.sh`` starts a one-node cluster with placeholder GPUs on a throwaway machine
(as root). Without ``$NTKBOOK_SLURM_PARTITION`` the test is skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ntkbook import store as st
from ntkbook import sweep

PARTITION = os.environ.get("NTKBOOK_SLURM_PARTITION")
pytestmark = pytest.mark.skipif(
    not PARTITION or shutil.which("sbatch") is None,
    reason="no SLURM cluster: set NTKBOOK_SLURM_PARTITION (tests/local_slurm.sh starts one)",
)


@st.experiment("tests.slurm.job")
def job_point(p):
    # Where the point ran: the SLURM job and what its script exported.
    return {
        "square": p["i"] ** 2,
        "job": os.environ.get("SLURM_JOB_ID", ""),
        "gres": os.environ.get("SLURM_JOB_GPUS", os.environ.get("SLURM_STEP_GPUS", "")),
        "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", ""),
        "jax_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR", ""),
        "store": os.environ.get(st.STORE_ENV, ""),
    }


def test_slurm_jobs_compute_a_sweep_into_the_shared_store(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from distributed import Client

    store_url, cache = str(tmp_path / "store"), str(tmp_path / "jax-cache")
    cluster = sweep.slurm_cluster(
        cores=1,
        memory="2GB",
        gpus=1,
        walltime="00:10:00",
        queue=PARTITION,
        jax_cache_dir=cache,
        store_url=store_url,
        log_directory=str(tmp_path / "logs"),
        # Dask sends this test's experiment by reference: the jobs import it from here.
        job_script_prologue=[f"export PYTHONPATH={Path(__file__).parent}"],
        scheduler_options={"dashboard_address": ":0"},
    )
    try:
        cluster.scale(jobs=2)
        client = Client(cluster)
        client.wait_for_workers(2, timeout=120)
        points = [{"i": i} for i in range(6)]
        results = sweep.map(job_point, points, client=client, store=store_url, progress=False)
        again = sweep.map(job_point, points, client=client, store=store_url, progress=False)
        client.close()
    finally:
        cluster.close()
    assert [r["square"] for r in results] == [i**2 for i in range(6)]
    assert (results.computed, again.computed, again.from_store) == (6, 0, 6)
    jobs = {r["job"] for r in results}
    assert len(jobs) == 2 and "" not in jobs  # both jobs' workers computed points
    assert all(r["gres"] != "" for r in results)  # each job holds the GPU it asked for
    assert {(r["preallocate"], r["jax_cache"], r["store"]) for r in results} == {
        ("false", cache, store_url)
    }
