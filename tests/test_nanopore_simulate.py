"""The synthetic recording: reproducible, balanced, and with the documented physics."""

import jax
import numpy as np
import pytest

from ntkbook.nanopore.simulate import (
    N_CLASSES,
    PoreParameters,
    class_index,
    class_levels,
    group_delay,
    noise_psd,
    simulate,
    simulate_runs,
)


@pytest.fixture(scope="module")
def recording():
    return simulate(jax.random.key(0), 6)


def test_same_key_same_trace_and_balanced(recording):
    again = simulate(jax.random.key(0), 6)
    np.testing.assert_array_equal(recording.trace.current, again.trace.current)
    assert recording.trace.synthetic
    assert np.all(np.bincount(recording.label, minlength=N_CLASSES) == 6)
    assert not np.array_equal(simulate(jax.random.key(1), 6).trace.current, recording.trace.current)


def test_levels_and_open_current(recording):
    pore = recording.pore
    x = recording.trace.current
    # Open pore away from events: I_0 within drift and noise.
    open_mask = np.ones(x.size, bool)
    for s, e in zip(recording.start, recording.end, strict=True):
        open_mask[max(0, s - 50) : e + 50] = False
    assert np.median(x[open_mask]) == pytest.approx(pore.open_pore_current, rel=0.02)
    # Long events: the mean current over the plateau is I_0·ρ_e within noise and sub-levels.
    long = np.flatnonzero(recording.end - recording.start > 100)
    measured = (
        np.array([x[recording.start[i] + 20 : recording.end[i] - 20].mean() for i in long])
        / pore.open_pore_current
    )
    assert np.median(np.abs(measured - recording.level[long])) < pore.switch_amplitude


def test_class_ordering_and_group_delay():
    params = PoreParameters()
    levels = class_levels(params)
    assert class_index(0, 10) == 6 and class_index(5, 4) == 35
    assert levels[class_index(0, 10)] == pytest.approx(params.level_10mer)
    assert levels[class_index(0, 4)] > levels[class_index(0, 10)]  # longer blocks more
    # 4-pole Bessel, −3 dB at 10 kHz: DC group delay ≈ 2.11/(2π f_c) (normalised table value).
    assert group_delay(params) == pytest.approx(
        2.114 / (2 * np.pi * params.filter_cutoff), rel=0.01
    )


def test_noise_spectrum_of_open_trace():
    """Open-pore noise power in 1–5 kHz matches ∫ S(f)|H(f)|² df."""
    params = PoreParameters(mean_gap=0.3, drift=0.0, mains_amplitude=0.0)  # no events
    rec = simulate(jax.random.key(3), 1, params, classes=(0,))
    x = rec.trace.current[: 2**18].astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x)) ** 2 * 2 / (x.size * params.sampling_rate)
    f = np.fft.rfftfreq(x.size, 1 / params.sampling_rate)
    band = (f > 1e3) & (f < 5e3)
    from ntkbook.nanopore.simulate import bessel_response

    expected = noise_psd(f[band], params) * np.abs(bessel_response(f[band], params)) ** 2
    assert spectrum[band].mean() == pytest.approx(expected.mean(), rel=0.05)


def test_bad_parameters():
    with pytest.raises(ValueError, match="filter_cutoff"):
        PoreParameters(filter_cutoff=600e3)
    with pytest.raises(ValueError, match="overlap"):
        PoreParameters(overlap=-1)
    with pytest.raises(ValueError, match="at most half the sampling rate"):
        PoreParameters(switch_rate=50e3)  # 50 kHz · 1.8^5 ≈ 945 kHz > 500 kHz
    with pytest.raises(ValueError, match="edge_open_time"):
        PoreParameters(edge_open_time=-1e-3)
    with pytest.raises(ValueError, match="unknown PoreParameters"):
        PoreParameters().with_changes(temperature=300)
    with pytest.raises(ValueError, match="n_events_per_class"):
        simulate(jax.random.key(0), 0)


def test_detected_events_keep_their_labels(recording):
    """Labelling detections by overlap with the simulated events: lost (too short) or merged
    events cannot shift labels, so each matched detection measures its own event's level."""
    from ntkbook.nanopore.events import detect_events, match_events

    detected = detect_events(recording.trace)
    match = match_events(detected, recording.start, recording.end)
    assert np.all(match >= 0)
    assert np.unique(match).size == match.size
    # Boundaries within 8 µs of the simulated ones (group delay included; 8 samples at 1 MHz).
    tolerance = 8e-6 * recording.pore.sampling_rate
    assert np.percentile(np.abs(detected.start - recording.start[match]), 95) <= tolerance
    assert np.percentile(np.abs(detected.end - recording.end[match]), 95) <= tolerance
    # Long events: the measured blockade is 1 − ρ_e within sub-level switching and noise.
    long = (detected.end - detected.start) > 640e-6 * recording.pore.sampling_rate
    error = detected.blockade[long] - (1 - recording.level[match[long]])
    assert np.median(np.abs(error)) < 0.01
    assert np.corrcoef(detected.blockade, 1 - recording.level[match])[0, 1] > 0.95


def test_runs_hold_one_class_each_on_pores_that_differ():
    """simulate_runs: every run holds one class, classes get their events, and the open-pore
    current and noise differ from run to run by the documented spreads."""
    pore = PoreParameters(pore_open_current_spread=0.1, pore_noise_spread=0.5)
    runs = simulate_runs(jax.random.key(5), 3, pore, runs_per_class=3, classes=(0, 8, 41))
    assert len(runs) == 9
    assert [int(np.unique(r.label)[0]) for r in runs] == [0] * 3 + [8] * 3 + [41] * 3
    assert all(r.label.size == 1 for r in runs)
    currents = np.array([r.pore.open_pore_current for r in runs])
    whites = np.array([r.pore.white for r in runs])
    assert np.unique(currents).size == 9 and np.unique(whites).size == 9
    # Each run's pore is the base pore with I_0 and the four noise terms scaled together.
    for r in runs:
        factor = r.pore.white / pore.white
        assert r.pore.flicker == pytest.approx(pore.flicker * factor)
        assert r.pore.capacitive == pytest.approx(pore.capacitive * factor)
        assert r.pore.level_10mer == pore.level_10mer
    again = simulate_runs(jax.random.key(5), 3, pore, runs_per_class=3, classes=(0, 8, 41))
    np.testing.assert_array_equal(again[4].trace.current, runs[4].trace.current)
    with pytest.raises(ValueError, match="every run needs an event"):
        simulate_runs(jax.random.key(0), 1, runs_per_class=2)


def test_defaults_sample_at_1_mhz_and_sub_levels_stay_below_the_class_spacing():
    pore = PoreParameters()
    assert pore.sampling_rate == 1e6
    assert pore.switch_amplitude < pore.level_step_ladder
