"""ABF and .npz round trips with planted blockades; bad files give clear errors.

Every ABF file here is written by the test itself with pyabf's ABF1 writer; several channels
with their own units, sweeps and the operation mode are set in the header afterwards.
"""

import struct

import jax
import numpy as np
import pytest

from ntkbook.nanopore import io as nio
from ntkbook.nanopore.events import detect_events, match_events
from ntkbook.nanopore.simulate import PoreParameters, simulate
from ntkbook.nanopore.trace import Trace


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
    # Within 12 µs (12 samples at 1 MHz; the 10 kHz filter's edges take about 35 µs).
    tolerance = 12e-6 * fs
    assert np.max(np.abs(detected.start[chosen] - rec.start[match[chosen]])) <= tolerance
    assert np.max(np.abs(detected.end[chosen] - rec.end[match[chosen]])) <= tolerance


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
    with pytest.raises(ValueError, match="junk.abf.*not a readable ABF file, truncated or corrupt"):
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


def _write_abf1(path, channels, units, sampling_rate, sweeps=1, operation_mode=None):
    """An ABF1 file with one column per channel (interleaved samples) and per-channel units."""
    from pyabf.abfWriter import writeABF1

    data = np.stack(channels, axis=1).reshape(sweeps, -1)
    writeABF1(data, str(path), sampling_rate * len(channels), units=units[0])
    raw = bytearray(path.read_bytes())
    struct.pack_into("h", raw, 120, len(channels))  # nADCNumChannels
    for i, unit in enumerate(units):
        struct.pack_into("h", raw, 410 + 2 * i, i)  # nADCSamplingSeq
        struct.pack_into("h", raw, 378 + 2 * i, i)  # nADCPtoLChannelMap
        struct.pack_into("8s", raw, 602 + 8 * i, unit.ljust(8).encode())  # sADCUnits
    if operation_mode is not None:
        struct.pack_into("h", raw, 8, operation_mode)  # nOperationMode
    path.write_bytes(bytes(raw))
    return path


def test_units_are_checked_and_converted(tmp_path):
    rng = np.random.default_rng(0)
    current_na = 0.1 + 0.001 * rng.standard_normal(4_000)
    voltage_mv = -50.0 + 0.1 * rng.standard_normal(4_000)
    path = _write_abf1(tmp_path / "two.abf", [current_na, voltage_mv], ["nA", "mV"], 100e3)
    trace = nio.read_abf(path, channel=0)
    assert trace.sampling_rate == 100e3
    # nA → pA; ABF1 keeps 16 bits over ±1000 (one scale for both channels): 0.031 nA steps.
    np.testing.assert_allclose(trace.current, 1e3 * current_na, atol=31.0)
    assert abs(np.mean(trace.current) - 100.0) < 16.0
    with pytest.raises(ValueError, match=r"two.abf: channel 1 is in 'mV', not a current"):
        nio.read_abf(path, channel=1)
    with pytest.raises(ValueError, match=r"channel 2 not in a file with 2 channel"):
        nio.read_abf(path, channel=2)
    picoamps = _write_abf1(tmp_path / "pa.abf", [100.0 * np.ones(4_000)], ["pA"], 100e3)
    np.testing.assert_allclose(nio.read_abf(picoamps).current, 100.0, atol=0.04)
    decibels = _write_abf1(tmp_path / "db.abf", [12.7 * np.ones(4_000)], ["dB"], 100e3)
    with pytest.raises(ValueError, match=r"channel 0 is in 'dB', not a current"):
        nio.read_abf(decibels)
    assert nio.CURRENT_UNITS_TO_PA == {"pA": 1.0, "nA": 1e3, "A": 1e12}


def test_sweeps_are_read_one_at_a_time(tmp_path):
    sweeps = np.stack([np.full(1_000, 100.0 + 10 * k) for k in range(3)])
    path = _write_abf1(tmp_path / "episodic.abf", [sweeps.ravel()], ["pA"], 50e3, sweeps=3)
    with pytest.raises(ValueError, match=r"episodic.abf: 3 sweeps .*read_abf\(path, sweep=k\)"):
        nio.read_abf(path)
    for k in range(3):
        trace = nio.read_abf(path, sweep=k)
        assert trace.current.size == 1_000
        np.testing.assert_allclose(trace.current, 100.0 + 10 * k, atol=0.04)
        assert f"sweep {k} of 3" in trace.description
    with pytest.raises(ValueError, match="sweep 3 not in a file with 3 sweep"):
        nio.read_abf(path, sweep=3)


def test_variable_length_sweeps(tmp_path, monkeypatch):
    """An event-driven recording whose sweeps differ in length: pyabf takes the sweep
    boundaries from the ABF2 synch array, which its ABF1 reader never loads, so the test gives
    the written ABF1 file one (lengths 10,000, 7,000 and 12,002 samples, average 9,667.3)."""
    import pyabf

    lengths = [10_000, 7_000, 12_002]
    current = np.concatenate([np.full(n, 50.0 + 20 * k) for k, n in enumerate(lengths)])
    path = _write_abf1(tmp_path / "events.abf", [current], ["pA"], 1e6, operation_mode=1)
    raw = bytearray(path.read_bytes())
    struct.pack_into("i", raw, 16, 3)  # lActualEpisodes
    path.write_bytes(bytes(raw))
    original = pyabf.ABF.__init__

    def with_synch_array(self, *args, **kwargs):
        original(self, *args, **kwargs)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
        self._synchArraySection = type("Synch", (), {"lLength": lengths, "lStart": starts})()

    monkeypatch.setattr(pyabf.ABF, "__init__", with_synch_array)
    with pytest.raises(ValueError, match=r"3 sweeps \(event-driven \(variable length\)"):
        nio.read_abf(path)
    for k, n in enumerate(lengths):
        trace = nio.read_abf(path, sweep=k)
        assert trace.current.size == n
        np.testing.assert_allclose(trace.current, 50.0 + 20 * k, atol=0.04)


def test_negative_current_recording_gives_the_same_events(planted, tmp_path):
    rec, _ = planted
    flipped = Trace(-rec.trace.current, rec.trace.sampling_rate)
    path = nio.write_abf(tmp_path / "negative.abf", flipped)
    trace = nio.read_abf(path)
    assert np.median(trace.current) < -200
    negative = detect_events(trace)
    positive = detect_events(nio.read_abf(planted[1]))
    assert negative.polarity == -1 and len(negative) == len(positive) > 100
    np.testing.assert_array_equal(negative.start, positive.start)
    assert np.all((negative.blockade > 0) & (negative.blockade < 1))
