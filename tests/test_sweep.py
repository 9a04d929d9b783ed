"""ntkbook.sweep on a real LocalCluster of 2 workers: same bits as serial, failures reported
with their parameters, interrupted sweeps keep their finished points, a SLURM job script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from ntkbook import store as st
from ntkbook import sweep

# Workers are spawned processes that cannot import this test module: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@st.experiment("tests.sweep.jax")
def jax_point(p):
    import jax
    import jax.numpy as jnp

    key = jax.random.fold_in(jax.random.key(p["seed"]), p["width"])
    w = jax.random.normal(key, (p["width"], p["width"]), jnp.float32)
    x = jnp.tanh(w @ w.T / p["width"])
    return {"x": x, "trace": float(jnp.trace(x)), "seed": p["seed"], "pid": os.getpid()}


@st.experiment("tests.sweep.crash")
def crash_point(p):
    Path(p["log"]).open("a").write(f"{p['i']}\n")
    if p["i"] == 2 and Path(p["flag"]).exists():
        os._exit(3)  # the worker dies, as on a segfault or an out-of-memory kill
    return {"i": np.int64(p["i"])}


def _thread_cores_after_a_jax_program() -> set[int]:
    import jax.numpy as jnp

    (jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
    tids = [int(tid) for tid in os.listdir("/proc/self/task")]
    return {core for tid in tids for core in os.sched_getaffinity(tid)}


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    cluster = sweep.local_cluster(2, allowed_failures=0)
    connected = Client(cluster)
    yield connected
    connected.close()
    cluster.close()


def test_local_cluster_workers_are_single_threaded_processes(client):
    workers = client.scheduler_info()["workers"].values()
    assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers)
    flags = client.run(lambda: os.environ.get("XLA_FLAGS", ""))
    assert all(sweep.SINGLE_THREAD_XLA_FLAGS in value for value in flags.values())
    # every thread of a worker (XLA's, started by a point, among them) runs on one core, its own
    cores = client.run(_thread_cores_after_a_jax_program)
    assert all(len(found) == 1 for found in cores.values())
    assert len({next(iter(found)) for found in cores.values()}) == min(2, sweep.default_workers())
    assert os.getpid() not in client.run(os.getpid).values()


def test_serial_and_dask_results_are_bit_identical(client, tmp_path):
    points = [{"seed": s, "width": w} for s in (0, 1) for w in (8, 33)]
    serial = sweep.map(jax_point, points, client=sweep.SERIAL, store=tmp_path / "a")
    dask = sweep.map(jax_point, points, client=client, store=tmp_path / "b")
    assert serial.keys == dask.keys and dask.computed == 4
    assert {r["pid"] for r in dask} <= set(client.run(os.getpid).values())
    for one, other in zip(serial, dask, strict=True):
        assert one["x"].dtype == other["x"].dtype == np.float32
        assert one["x"].tobytes() == other["x"].tobytes()
        assert one["trace"] == other["trace"] and one["seed"] == other["seed"]
    assert [r["seed"] for r in dask] == [0, 0, 1, 1]  # the order of the points


def test_points_already_stored_are_not_computed_again(client, tmp_path):
    first = sweep.map(jax_point, [{"seed": 0, "width": 4}], client=client, store=tmp_path)
    lines = []
    points = [{"seed": 0, "width": 4}, {"seed": 0, "width": 5}, {"seed": 0, "width": 4}]
    again = sweep.map(jax_point, points, client=client, store=tmp_path, log=lines.append)
    assert (first.computed, again.from_store, again.computed) == (1, 1, 1)
    assert again.keys[0] == again.keys[2] == first.keys[0]
    assert again[0]["pid"] == first[0]["pid"]  # read back, not recomputed
    assert "3 point(s), 1 from the store" in lines[0]


def test_a_point_that_kills_its_worker_is_reported_and_only_it_is_rerun(client, tmp_path):
    log, flag = tmp_path / "log", tmp_path / "crash"
    flag.touch()
    points = [{"i": i, "log": str(log), "flag": str(flag)} for i in range(4)]
    with pytest.raises(sweep.SweepFailed) as failed:
        sweep.map(crash_point, points, client=client, store=tmp_path / "s", progress=False)
    error = failed.value
    assert [f.parameters["i"] for f in error.failures] == [2]
    assert "KilledWorker" in str(error) and '"i":2' in str(error)
    assert error.stored == 3 and error.total == 4
    assert len(list(st.Store(tmp_path / "s").entries())) == 3
    flag.unlink()
    log.write_text("")
    rerun = sweep.map(crash_point, points, client=client, store=tmp_path / "s")
    assert (rerun.from_store, rerun.computed) == (3, 1)
    assert log.read_text().split() == ["2"]
    assert [int(r["i"]) for r in rerun] == [0, 1, 2, 3]


def test_an_exception_is_reported_with_its_parameters_and_traceback(client, tmp_path):
    with pytest.raises(sweep.SweepFailed) as failed:
        sweep.map(jax_point, [{"seed": 0, "width": 3}, {"seed": 0}], client=client, store=tmp_path)
    (failure,) = failed.value.failures
    assert failure.parameters == {"seed": 0}
    assert "KeyError: 'width'" in failure.error and "jax_point" in failure.traceback
    assert failed.value.stored == 1


INTERRUPTED = textwrap.dedent(
    """
    import signal, sys, time
    from ntkbook import store as st, sweep

    # Ctrl-C as in a terminal, even when the test runs where SIGINT is ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    @st.experiment("tests.sweep.slow")
    def slow(p):
        time.sleep(0.4 if p["i"] < 4 else 30)
        return {"i": p["i"]}

    if __name__ == "__main__":
        points = [{"i": i} for i in range(8)]
        sweep.map(slow, points, store=sys.argv[1], workers=2, progress=False)
    """
)


def test_an_interrupted_sweep_loses_no_finished_point(tmp_path):
    (tmp_path / "slowpoints.py").write_text(INTERRUPTED)
    url = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    client = subprocess.Popen(
        [sys.executable, str(tmp_path / "slowpoints.py"), str(url)],
        env=env,
        stderr=subprocess.PIPE,
    )
    store = st.Store(url)
    # Spawned workers import JAX first; in a fresh environment that alone can take a minute.
    deadline = time.monotonic() + 300
    while len(list(store.entries())) < 4 and time.monotonic() < deadline:
        if client.poll() is not None:
            pytest.fail(f"the sweep ended before the interrupt: {client.stderr.read()[-2000:]}")
        time.sleep(0.2)
    finished = {info.key for info in store.entries()}
    assert len(finished) == 4, "four quick points were not stored within 300 s"
    client.send_signal(signal.SIGINT)
    try:
        _, stderr = client.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        client.kill()
        _, stderr = client.communicate()
        pytest.fail(f"the sweep did not stop within 120 s of SIGINT: {stderr.decode()[-2000:]}")
    assert client.returncode != 0 and b"KeyboardInterrupt" in stderr
    kept = list(store.entries())
    assert finished <= {info.key for info in kept}
    assert all(info.meta is not None for info in kept) and store.temporary_files() == []


def test_slurm_recipe_builds_a_job_script_with_gpu_cores_and_memory(tmp_path):
    pytest.importorskip("dask_jobqueue")
    cluster = sweep.slurm_cluster(
        cores=16,
        memory="64GB",
        gpus=1,
        walltime="12:00:00",
        queue="gpu",
        account="proj",
        jax_cache_dir="/shared/jax-cache",
        store_url="/shared/ntkbook-store",
        scheduler_options={"dashboard_address": ":0"},  # any free port
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    assert "#SBATCH --gres=gpu:1" in lines
    assert "#SBATCH --cpus-per-task=16" in lines
    assert "#SBATCH --mem=60G" in lines  # 64 GB is 59.6 GiB; SLURM is asked in whole GiB
    assert "#SBATCH -t 12:00:00" in lines and "#SBATCH -p gpu" in lines
    assert "#SBATCH -A proj" in lines
    assert "export XLA_PYTHON_CLIENT_PREALLOCATE=false" in lines
    assert "export JAX_COMPILATION_CACHE_DIR=/shared/jax-cache" in lines
    assert f"export {st.STORE_ENV}=/shared/ntkbook-store" in lines
    assert "--nthreads 1" in script and "--memory-limit 59.60GiB" in script
    assert sys.executable in script


def test_slurm_recipe_refuses_bad_sizes():
    with pytest.raises(ValueError, match="cores"):
        sweep.slurm_cluster(cores=0)
    with pytest.raises(ValueError, match="gpus"):
        sweep.slurm_cluster(gpus=-1)
