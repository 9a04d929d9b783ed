"""The authors' images against ssqueezepy + an antialiased resize; the level channel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.nanopore.cwt import scales_for_frequencies
from ntkbook.nanopore.events import authors_cut, authors_detection, detect_events
from ntkbook.nanopore.inputs import authors_scaleograms, event_features, with_level_channel
from ntkbook.nanopore.simulate import PoreParameters, simulate
from ntkbook.nanopore.trace import relative_drop


@pytest.fixture(scope="module")
def detected():
    rec = simulate(jax.random.key(2), 2, PoreParameters(), classes=(3, 17, 30))
    options = authors_detection(rec.trace.sampling_rate)
    return rec, detect_events(rec.trace, edge_margin=2e-3, **options)


def test_authors_images_match_ssqueezepy_and_an_antialiased_resize(detected):
    """Each event alone: ssqueezepy's ``ssq_cwt`` (gmw) of ``I/I_0`` over the widened cut, real
    and imaginary part resized by ``jax.image.resize(..., antialias=True)``."""
    ssqueezepy = pytest.importorskip("ssqueezepy")
    rec, events = detected
    assert len(events) >= 3
    size, frequency_range, n_scales = (12, 20), (2e3, 100e3), 24
    images = authors_scaleograms(
        rec.trace,
        events,
        image_size=size,
        frequency_range=frequency_range,
        n_scales=n_scales,
        batch_size=2,
    )
    assert images.shape == (len(events), *size, 2)
    frequencies = np.geomspace(frequency_range[1], frequency_range[0], n_scales)
    scales = scales_for_frequencies(frequencies, rec.trace.sampling_rate, "gmw")
    lo, hi = authors_cut(events, rec.trace.current.size)
    for i in range(len(events)):
        segment = rec.trace.current[lo[i] : hi[i]].astype(np.float64) / events.open_current[i]
        _, coefficients, *_ = ssqueezepy.ssq_cwt(
            segment, wavelet=("gmw", {"dtype": "float64"}), scales=scales, fs=1e6
        )
        reference = np.stack(
            [
                np.asarray(jax.image.resize(jnp.asarray(part), size, "linear", antialias=True))
                for part in (coefficients.real, coefficients.imag)
            ],
            axis=-1,
        )
        scale = np.max(np.abs(reference))
        assert np.max(np.abs(images[i] - reference)) <= 1e-4 * scale


def test_level_channel_and_one_relative_drop(detected):
    rec, events = detected
    images = np.zeros((len(events), 4, 5), np.float32)
    stacked = with_level_channel(images, events.blockade)
    assert stacked.shape == (len(events), 4, 5, 2)
    np.testing.assert_allclose(stacked[:, 2, 3, 1], events.blockade.astype(np.float32))
    with pytest.raises(ValueError, match="blockade"):
        with_level_channel(images, events.blockade[:-1])
    features, names = event_features(rec.trace, events)
    # The 'blockade' feature and the mean of b over the event are 1 − Ī/I_0 of the events.
    np.testing.assert_allclose(features[:, names.index("blockade")], events.blockade, rtol=1e-5)
    drop = relative_drop(rec.trace.current[events.start[0] : events.end[0]], events.open_current[0])
    assert features[0, names.index("mean")] == pytest.approx(drop.mean(), rel=1e-5)
    assert relative_drop(np.float32(25.0), 100.0) == pytest.approx(0.75)
