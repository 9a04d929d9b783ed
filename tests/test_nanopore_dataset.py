"""Labelled events of simulated runs: labels follow the runs, inputs keep the event order."""

import jax
import numpy as np
import pytest

from ntkbook.nanopore import dataset, inputs
from ntkbook.nanopore.events import authors_detection
from ntkbook.nanopore.simulate import PoreParameters, class_levels


@pytest.fixture(scope="module")
def event_set():
    pore = PoreParameters()
    return pore, dataset.simulated_events(
        jax.random.key(4),
        pore,
        6,
        runs_per_class=2,
        detection=authors_detection(pore.sampling_rate),
        padding=100e-6,
    )


def test_labels_follow_runs_and_levels_follow_labels(event_set):
    pore, events = event_set
    assert len(events) > 200 and events.n_simulated == 42 * 6
    # Every class keeps events, the longest-dwelling ones too (a baseline window that is
    # mostly blocked used to hide whole runs of them).
    assert np.bincount(events.label, minlength=42).min() >= 2
    assert len(events) + events.n_rejected_short + events.n_rejected_shallow <= 42 * 6 + 5
    # Runs are recorded class by class: one label per run, run indices ascending.
    for run in np.unique(events.run):
        assert np.unique(events.label[events.run == run]).size == 1
    assert np.all(np.diff(events.run) >= 0)
    # The simulated level of each kept event lies near its class mean (spread 0.5 spacings).
    deviation = events.true_level - class_levels(pore)[events.label]
    assert np.max(np.abs(deviation)) < 5 * pore.overlap * pore.level_step_ladder
    # The measured blockade follows the simulated level.
    blockade = events.field("blockade")
    assert np.corrcoef(blockade, 1 - events.true_level)[0, 1] > 0.95
    assert events.noise_sigma.size == len(events.runs)


def test_inputs_of_all_runs_keep_the_event_order(event_set):
    _, events = event_set
    raw = events.stack(inputs.raw_events, length=16, padding=100e-6)
    assert raw.shape == (len(events), 16)
    # The plateau of each long raw event (its middle) is its measured blockade, roughly (the
    # filtered edges make the mean of short events shallower than their plateau).
    long = events.field("dwell") > 300e-6
    assert long.sum() > 50
    # (one detection in a hundred may join two events, with open pore in its middle).
    close = np.abs(raw[long, 8] - events.field("blockade")[long]) < 0.05
    assert close.mean() > 0.97
    together = inputs.event_scaleograms(events.runs, image_size=(4, 6), n_scales=4)
    trace, first = events.runs[0]
    alone = inputs.event_scaleograms(trace, first, image_size=(4, 6), n_scales=4)
    np.testing.assert_allclose(together[: len(first)], alone, atol=1e-5)
    t, current = dataset.event_segment(events, 0, 100e-6)
    assert t[0] == pytest.approx(-100e-6) and current.size == t.size
    with pytest.raises(ValueError, match="index"):
        dataset.event_segment(events, len(events), 0.0)
