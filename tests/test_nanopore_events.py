"""Events near the ends of a trace, and wavelet denoising against the noise-free trace."""

import jax
import numpy as np
import pytest

from ntkbook.nanopore.classify import raw_events
from ntkbook.nanopore.events import denoise, detect_events, event_windows
from ntkbook.nanopore.simulate import PoreParameters, Trace, simulate

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
    with pytest.raises(ValueError, match="level must be a positive int"):
        denoise(noisy, level=0)
