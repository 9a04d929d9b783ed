"""Events near the ends of a trace, and wavelet denoising against the noise-free trace."""

import jax
import numpy as np
import pytest

from ntkbook.nanopore.events import (
    Events,
    authors_cut,
    authors_detection,
    denoise,
    detect_events,
    event_windows,
)
from ntkbook.nanopore.inputs import raw_events
from ntkbook.nanopore.simulate import PoreParameters, simulate
from ntkbook.nanopore.trace import Trace

PADDING = 100e-6


def test_every_seed_leaves_open_pore_at_both_ends():
    """Exp-distributed first and last gaps used to put events within the padding of an end on
    some seeds; the simulator's open-pore stretch at both ends rules that out."""
    params = PoreParameters()
    edge = int(round(params.edge_open_time * params.sampling_rate))
    for seed in range(40):
        rec = simulate(jax.random.key(seed), 1, params, classes=tuple(range(0, 42, 5)))
        n = rec.trace.current.size
        assert rec.start.min() >= edge and rec.end.max() <= n - edge
        detected = detect_events(rec.trace, edge_margin=PADDING)
        assert detected.n_rejected_edge == 0
        event_windows(detected, n, PADDING)
        assert raw_events(rec.trace, detected, length=32, padding=PADDING).shape == (
            len(detected),
            32,
        )


def _trace_with_blockades(blocked: list[tuple[int, int]], n: int = 20_000) -> Trace:
    rng = np.random.default_rng(0)
    current = 100.0 + rng.normal(0.0, 1.0, n)
    for lo, hi in blocked:
        current[lo:hi] = 50.0 + rng.normal(0.0, 1.0, hi - lo)
    return Trace(current.astype(np.float32), 250e3)


def test_events_at_the_ends_are_counted_not_cut():
    trace = _trace_with_blockades([(5, 200), (8_000, 8_300), (19_900, 20_000)])
    kept = detect_events(trace, edge_margin=PADDING, denoise_wavelet=None)
    assert len(kept) == 1 and kept.n_rejected_edge == 2
    assert abs(int(kept.start[0]) - 8_000) <= 1 and abs(int(kept.end[0]) - 8_300) <= 1
    everything = detect_events(trace, denoise_wavelet=None)
    assert len(everything) == 3 and everything.n_rejected_edge == 0
    # Without the margin, the cut-out step raises the same clear error for every input kind.
    with pytest.raises(ValueError, match="run past the start or end"):
        raw_events(trace, everything, padding=PADDING)
    with pytest.raises(ValueError, match="run past the start or end"):
        event_windows(everything, trace.current.size, PADDING, buckets=(512, 2048))
    with pytest.raises(ValueError, match="edge_margin"):
        detect_events(trace, edge_margin=-1.0)


def test_denoise_lowers_white_noise_on_planted_steps():
    """Steps in white noise, where the finest-level noise estimate is the right one: the RMS
    distance to the noise-free steps falls well below the noise level."""
    rng = np.random.default_rng(3)
    clean = np.full(20_000, 100.0)
    for lo in range(1_000, 19_000, 2_000):
        clean[lo : lo + rng.integers(100, 800)] = rng.uniform(30.0, 70.0)
    noisy = clean + rng.normal(0.0, 2.0, clean.size)
    error = np.sqrt(np.mean((denoise(noisy) - clean) ** 2))
    assert error < 0.5 * 2.0
    with pytest.raises(ValueError, match="too short for 4 levels"):
        denoise(noisy[:40])
    with pytest.raises(ValueError, match="decomposition_levels must be a positive int"):
        denoise(noisy, decomposition_levels=0)


def test_negative_current_is_detected_on_its_magnitude():
    """A recording at the other polarity (open pore at −100 pA) gives the same events as its
    sign-flipped copy, with polarity −1 and positive blockades (it used to give 0 events)."""
    trace = _trace_with_blockades([(3_000, 3_400), (9_000, 9_250), (15_000, 15_600)])
    flipped = Trace(-trace.current, trace.sampling_rate)
    positive = detect_events(trace, denoise_wavelet=None)
    negative = detect_events(flipped, denoise_wavelet=None)
    assert len(positive) == 3 and negative.polarity == -1 and positive.polarity == 1
    np.testing.assert_array_equal(negative.start, positive.start)
    np.testing.assert_array_equal(negative.end, positive.end)
    np.testing.assert_allclose(negative.blockade, positive.blockade, rtol=1e-6)
    assert np.all((negative.blockade > 0.45) & (negative.blockade < 0.55))
    raw = raw_events(flipped, negative, length=16, padding=PADDING)
    np.testing.assert_allclose(raw, raw_events(trace, positive, length=16, padding=PADDING))


def test_min_dwell_shorter_than_one_sample_is_refused():
    trace = Trace(_trace_with_blockades([(3_000, 3_400)]).current, 10e3)  # 10 kHz: 100 µs/sample
    with pytest.raises(
        ValueError, match=r"min_dwell 8e-05 s is shorter than one sample \(0.0001 s"
    ):
        detect_events(trace)
    assert len(detect_events(trace, min_dwell=2e-4, denoise_wavelet=None)) == 1


def test_traces_without_one_positive_open_level_are_refused():
    rng = np.random.default_rng(1)
    # Events whose current crosses zero: blockade above 1 (a dB or offset channel, say).
    crossing = 5.0 + rng.normal(0.0, 0.5, 20_000)
    for lo in (3_000, 9_000, 15_000):
        crossing[lo : lo + 400] = -40.0 + rng.normal(0.0, 0.5, 400)
    with pytest.raises(ValueError, match=r"3 of 3 events have a blockade 1 − I/I_0 outside"):
        detect_events(Trace(crossing.astype(np.float32), 250e3), denoise_wavelet=None)
    # A baseline that is negative under the events although the median current is positive.
    mixed = np.concatenate([100.0 + rng.normal(0, 1, 30_000), -100.0 + rng.normal(0, 1, 20_000)])
    for lo in (35_000, 42_000):
        mixed[lo : lo + 400] -= 50.0
    with pytest.raises(ValueError, match=r"baseline is <= 0 pA under [23] of 3 events"):
        detect_events(
            Trace(mixed.astype(np.float32), 250e3), denoise_wavelet=None, baseline_window=0.01
        )
    with pytest.raises(ValueError, match="median current is 0 pA"):
        detect_events(Trace(np.zeros(5_000, np.float32), 250e3), denoise_wavelet=None)


def test_authors_detection_and_cut():
    assert authors_detection(1e6) == {
        "threshold_sigma": 4.0,
        "min_mean_sigma": 5.0,
        "min_dwell": 80e-6,
        "baseline_window": 5e-3,
    }
    one = np.ones(2)
    events = Events(
        np.array([1_000, 5_000]), np.array([1_110, 5_920]), one, one, one, one * 0.5, 1e6, 1.0
    )
    lo, hi = authors_cut(events, 10_000)
    # 110 samples + 2·40 = 190, widened by ⌊0.35·190⌋ = 66 on each side; 920 + 80 → 350.
    np.testing.assert_array_equal(lo, [1_000 - 40 - 66, 5_000 - 40 - 350])
    np.testing.assert_array_equal(hi, [1_110 + 40 + 66, 5_920 + 40 + 350])
    with pytest.raises(ValueError, match="1 event.*widened cut run past"):
        authors_cut(events, 6_200)
