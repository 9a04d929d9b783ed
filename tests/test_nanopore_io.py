"""ABF and .npz round trips with planted blockades; bad files give clear errors."""

import jax
import numpy as np
import pytest

from ntkbook.nanopore import io as nio
from ntkbook.nanopore.events import detect_events, match_events
from ntkbook.nanopore.simulate import PoreParameters, Trace, simulate


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rec = simulate(jax.random.key(7), 8, PoreParameters(mean_gap=3e-3))
    path = tmp_path_factory.mktemp("abf") / "planted.abf"
    nio.write_abf(path, rec.trace)
    return rec, path


def test_abf_round_trip_and_detection(planted):
    rec, path = planted
    trace = nio.read_abf(path)
    assert trace.sampling_rate == rec.trace.sampling_rate
    assert trace.current.size == rec.trace.current.size
    # ABF1 stores 16-bit integers: 1000 pA / 32767 ≈ 0.03 pA steps for this range.
    assert np.max(np.abs(trace.current - rec.trace.current)) < 0.031
    detected = detect_events(trace)
    fs = trace.sampling_rate
    planted_long = (rec.end - rec.start) / fs >= 80e-6
    assert abs(len(detected) - planted_long.sum()) <= 0.02 * planted_long.sum()
    match = match_events(detected, rec.start, rec.end)
    assert np.all(match >= 0)
    # Boundaries of isolated events (no neighbour within 1 ms) within a few samples.
    order = np.argsort(rec.start)
    before = rec.start[order] - np.concatenate([[-(10**9)], rec.end[order][:-1]])
    after = np.concatenate([rec.start[order][1:], [10**12]]) - rec.end[order]
    isolated = order[(before > fs * 1e-3) & (after > fs * 1e-3)]
    chosen = np.isin(match, isolated)
    assert chosen.sum() > 100
    assert np.max(np.abs(detected.start[chosen] - rec.start[match[chosen]])) <= 3
    assert np.max(np.abs(detected.end[chosen] - rec.end[match[chosen]])) <= 3


def test_npz_round_trip(tmp_path):
    trace = Trace(np.linspace(1, 2, 100, dtype=np.float32), 1e5, True, "ramp")
    nio.write_npz(tmp_path / "t.npz", trace)
    back = nio.read_trace(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.current, trace.current)
    assert (back.sampling_rate, back.synthetic, back.description) == (1e5, True, "ramp")


def test_corrupt_and_truncated_files(planted, tmp_path):
    _, path = planted
    data = path.read_bytes()
    (tmp_path / "cut.abf").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.abf"):
        nio.read_abf(tmp_path / "cut.abf")
    (tmp_path / "junk.abf").write_bytes(b"not an abf" * 100)
    with pytest.raises(ValueError, match="junk.abf.*not a readable ABF"):
        nio.read_abf(tmp_path / "junk.abf")
    (tmp_path / "header.abf").write_bytes(data[:100])
    with pytest.raises(ValueError, match="header.abf"):
        nio.read_abf(tmp_path / "header.abf")
    nio.write_npz(tmp_path / "ok.npz", Trace(np.ones(10, np.float32), 1e3))
    npz = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(npz[: len(npz) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        nio.read_npz(tmp_path / "cut.npz")
    with pytest.raises(ValueError, match="unknown trace format"):
        nio.read_trace(tmp_path / "trace.csv")


def test_empty_and_nan_traces(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        Trace(np.zeros(0, np.float32), 1e5)
    with pytest.raises(ValueError, match="NaN/inf sample.*index 3"):
        Trace(np.array([1, 1, 1, np.nan, 1], np.float32), 1e5)
    np.savez(tmp_path / "nan.npz", current=np.array([1.0, np.nan]), sampling_rate=1e3)
    with pytest.raises(ValueError, match="nan.npz.*NaN"):
        nio.read_npz(tmp_path / "nan.npz")
    np.savez(tmp_path / "empty.npz", current=np.zeros(0), sampling_rate=1e3)
    with pytest.raises(ValueError, match="empty.npz.*empty"):
        nio.read_npz(tmp_path / "empty.npz")
