"""ntkbook.store: keys over four inputs, exact round trips, atomic entries, clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.book import provenance as prov

FINGERPRINT = {"code": "c" * 64, "versions": {"jax": "1.0", "lock": "sha256:00"}}


@st.experiment("tests.store.square")
def square(p):
    return {"y": np.float32(p["x"]) ** 2, "n": p["x"]}


def test_key_changes_with_each_of_its_four_inputs_and_only_with_them():
    base = st.make_key("a", {"x": 1, "y": [1, 2]}, FINGERPRINT)
    assert base == st.make_key("a", {"y": [1, 2], "x": 1}, FINGERPRINT)  # order of keys
    assert base == st.make_key("a", {"x": 1, "y": (1, 2)}, FINGERPRINT)  # tuple = list
    other_code = {**FINGERPRINT, "code": "d" * 64}
    other_versions = {**FINGERPRINT, "versions": {"jax": "1.1", "lock": "sha256:00"}}
    other_lock = {**FINGERPRINT, "versions": {"jax": "1.0", "lock": "sha256:01"}}
    changed = [
        st.make_key("b", {"x": 1, "y": [1, 2]}, FINGERPRINT),
        st.make_key("a", {"x": 1, "y": [1, 2]}, other_code),
        st.make_key("a", {"x": 1, "y": [1, 2]}, other_versions),
        st.make_key("a", {"x": 1, "y": [1, 2]}, other_lock),
        st.make_key("a", {"x": 2, "y": [1, 2]}, FINGERPRINT),
        st.make_key("a", {"x": 1.0, "y": [1, 2]}, FINGERPRINT),  # 1 and 1.0 are not the same
    ]
    assert len({base, *changed}) == 1 + len(changed)
    assert all(len(key) == 64 and int(key, 16) >= 0 for key in changed)


def test_fingerprint_is_the_chapter_cache_code_hash_and_versions():
    fingerprint = st.code_fingerprint()
    assert fingerprint["code"] == prov.source_tree_hash()
    assert fingerprint["versions"] == prov.package_versions()


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"x": np.float32(1.0)}, "float32"),
        ({"x": float("nan")}, "not finite"),
        ({"x": {1, 2}}, "set"),
        ({"x": {"inner": object()}}, "parameters['x']['inner']"),
        ({3: 1}, "key 3"),
        ([("x", 1)], "must be a dict"),
    ],
)
def test_parameters_that_are_not_json_are_refused_by_name(parameters, named):
    with pytest.raises(st.StoreError, match=named.replace("[", r"\[").replace("]", r"\]")):
        st.make_key("a", parameters, FINGERPRINT)


def test_round_trip_is_exact(tmp_path):
    store = st.Store(tmp_path / "store")
    rng = np.random.default_rng(0)
    result = {
        "f32": rng.normal(size=(3, 4)).astype(np.float32),
        "i64": np.arange(5),
        "flags": np.array([True, False]),
        "scalar": np.float32(1.5),
        "nested": [{"a": 1, "b": 2.5, "c": None, "s": "text"}, (np.int32(3), 0.1)],
        "nan": float("nan"),
        "inf": float("-inf"),
    }
    key = st.make_key("rt", {"x": 1}, FINGERPRINT)
    store.put("rt", key, result, {"experiment": "rt", "parameters": {"x": 1}, "provenance": {}})
    entry = store.get("rt", key)
    assert entry is not None and entry.parameters == {"x": 1}
    got = entry.result
    for name in ("f32", "i64", "flags"):
        assert got[name].dtype == result[name].dtype
        assert got[name].tobytes() == result[name].tobytes()
    assert got["scalar"].dtype == np.float32 and got["scalar"] == np.float32(1.5)
    assert got["nested"][0] == {"a": 1, "b": 2.5, "c": None, "s": "text"}
    assert isinstance(got["nested"][1], tuple) and got["nested"][1][1] == 0.1
    assert np.isnan(got["nan"]) and got["inf"] == float("-inf")
    assert store.get("rt", "0" * 64) is None


def test_results_that_cannot_be_stored_are_refused(tmp_path):
    store = st.Store(tmp_path)
    with pytest.raises(st.StoreError, match="object array"):
        store.put("e", "0" * 64, {"x": np.array([object()])}, {})
    with pytest.raises(st.StoreError, match=r"result \['x'\]"):
        store.put("e", "0" * 64, {"x": object()}, {})
    assert not list(store.entries())


def test_an_existing_entry_is_kept_and_no_temporary_file_is_left(tmp_path):
    store = st.Store(tmp_path)
    key = "1" * 64
    store.put("e", key, {"v": 1}, {"parameters": {}, "provenance": {"n": 1}})
    store.put("e", key, {"v": 2}, {"parameters": {}, "provenance": {"n": 2}})
    assert store.get("e", key).result == {"v": 1}
    assert store.temporary_files() == []
    assert [info.key for info in store.entries()] == [key]


def test_unregistered_experiment_is_refused_with_the_registered_names():
    with pytest.raises(st.StoreError, match="no experiment registered as 'nope'.*tests.store"):
        st.get_experiment("nope")

    def stray(p):
        return p

    with pytest.raises(st.StoreError, match="not a registered experiment"):
        sweep.map(stray, [{"x": 1}], client=sweep.SERIAL)


def test_an_experiment_name_is_registered_once():
    with pytest.raises(st.StoreError, match="already registered"):
        st.experiment("tests.store.square")(lambda p: p)
    with pytest.raises(st.StoreError, match="lower case"):
        st.experiment("Bad Name")


@pytest.mark.parametrize(
    ("url", "named"),
    [("s3://bucket/results", "s3fs"), ("gs://bucket/results", "gcsfs"), ("nope://x", "nope")],
)
def test_store_url_without_its_backend_names_the_package(url, named):
    with pytest.raises(st.StoreError, match=named):
        st.Store(url)


def test_store_url_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(st.STORE_ENV, str(tmp_path / "shared"))
    assert st.Store().url == str(tmp_path / "shared")
    monkeypatch.delenv(st.STORE_ENV)
    assert st.Store().url.endswith(st.DEFAULT_STORE_DIR)


def test_any_fsspec_store_works_like_the_local_one():
    store = st.Store("memory://ntkbook-test-store")
    results = sweep.map(square, [{"x": 2}, {"x": 3}], client=sweep.SERIAL, store=store)
    assert [float(r["y"]) for r in results] == [4.0, 9.0]
    again = sweep.map(square, [{"x": 3}, {"x": 4}], client=sweep.SERIAL, store=store)
    assert (again.from_store, again.computed) == (1, 1)
    assert store.temporary_files() == []
    assert len(list(store.entries())) == 3


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from ntkbook import store as st, sweep

    @st.experiment("tests.store.slow")
    def slow(p):
        time.sleep(0.5)  # both writers compute before either writes
        return {"y": np.arange(1000, dtype=np.float32) * p["x"], "writer": sys.argv[2]}

    if __name__ == "__main__":
        sweep.map(slow, [{"x": 1}], client=sweep.SERIAL, store=sys.argv[1], progress=False)
    """
)


def test_two_sweeps_writing_the_same_key_leave_one_valid_entry(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    url = str(tmp_path / "store")
    writers = [
        subprocess.Popen([sys.executable, str(script), url, name], stderr=subprocess.PIPE)
        for name in ("one", "two")
    ]
    logs = [writer.communicate(timeout=120)[1].decode() for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], logs
    # both computed the point: neither found it in the store
    assert all("0 from the store" in log for log in logs), logs
    store = st.Store(url)
    entries = list(store.entries())
    assert len(entries) == 1 and entries[0].meta is not None
    entry = store.load(entries[0])
    assert entry.result["writer"] in ("one", "two")
    assert np.array_equal(entry.result["y"], np.arange(1000, dtype=np.float32))
    assert store.temporary_files() == []


def test_entry_records_parameters_and_provenance(tmp_path):
    results = sweep.map(square, [{"x": 5}], client=sweep.SERIAL, store=tmp_path, progress=False)
    info = st.Store(tmp_path).find(results.keys[0][:8])
    meta = info.meta
    assert meta["experiment"] == "tests.store.square" and meta["parameters"] == {"x": 5}
    provenance = meta["provenance"]
    assert provenance["wall_time_s"] >= 0 and provenance["jax_backend"] == "cpu"
    assert provenance["versions"]["numpy"] == np.__version__
    assert provenance["git"]["commit"]
    assert json.loads(json.dumps(meta)) == meta
    assert Path(info.path).name == f"{results.keys[0]}.npz"
