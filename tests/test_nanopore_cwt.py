"""The JAX CWT against ssqueezepy (hhhat, Morlet) and against a direct time-domain convolution."""

import numpy as np
import pytest

from ntkbook.nanopore.cwt import (
    cwt,
    padded_length,
    peak_frequency,
    resize_taps,
    resize_weights,
    scaleogram,
    scales_for_frequencies,
    wavelet_fourier,
)


def _signal(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (np.sin(0.3 * t) + 0.5 * rng.standard_normal(n).cumsum() / np.sqrt(n)).astype(np.float32)


@pytest.mark.parametrize("n", [300, 1000, 1024, 2047])
@pytest.mark.parametrize("wavelet", [("hhhat", {"mu": 5}), ("morlet", {"mu": 6})])
def test_matches_ssqueezepy(n, wavelet):
    ssqueezepy = pytest.importorskip("ssqueezepy")
    x = _signal(n)
    scales = np.geomspace(2.0, 200.0, 40).astype(np.float32)
    reference, _ = ssqueezepy.cwt(x, wavelet=wavelet, scales=scales)
    ours = np.asarray(cwt(x, scales, wavelet))
    assert ours.shape == reference.shape == (40, n)
    assert np.max(np.abs(ours - reference)) <= 1e-3 * np.max(np.abs(reference))
    # Every scale, not only the largest coefficients.
    per_scale = np.max(np.abs(ours - reference), axis=1) / np.max(np.abs(reference), axis=1)
    assert np.all(per_scale < 1e-3)


def test_morlet_matches_time_domain_convolution():
    """``W_s[b] = Σ_m x_p[m] (1/s) ψ((b − m)/s)`` on the reflect-padded signal, with the
    closed-form time-domain Morlet ``ψ(t) = c π^(−1/4) e^(−t²/2) (e^(iμt) − κ)``."""
    mu = 6.0
    n = 500
    x = _signal(n, seed=3).astype(np.float64)
    n_up, n1 = padded_length(n)
    padded = np.pad(x, (n1, n_up - n - n1), mode="reflect")
    kappa = np.exp(-0.5 * mu**2)
    c = (1 + np.exp(-(mu**2)) - 2 * np.exp(-0.75 * mu**2)) ** -0.5
    scales = np.array([3.0, 8.0, 20.0])
    ours = np.asarray(cwt(x, scales, ("morlet", {"mu": mu})))
    for row, s in enumerate(scales):
        half = int(np.ceil(8 * s))
        t = np.arange(-half, half + 1) / s
        psi = c * np.pi**-0.25 * np.exp(-0.5 * t**2) * (np.exp(1j * mu * t) - kappa) / s
        full = np.convolve(padded, psi, mode="same")
        reference = full[n1 : n1 + n]
        interior = slice(half, n - half)  # away from the circular wrap of the FFT version
        error = np.max(np.abs(ours[row, interior] - reference[interior]))
        assert error <= 2e-3 * np.max(np.abs(reference[interior])), (s, error)


def test_sinusoid_on_grid_without_padding_is_exact():
    """Without padding the transform is circular: ``cos(ω₀n)`` gives
    ``½(ψ̂(sω₀) e^{iω₀n} + ψ̂(−sω₀) e^{−iω₀n})`` exactly."""
    n = 256
    omega0 = 2 * np.pi * 20 / n
    t = np.arange(n)
    x = np.cos(omega0 * t)
    scales = np.array([4.0, 6.0, 12.0])
    ours = np.asarray(cwt(x, scales, ("hhhat", {"mu": 5.0}), padtype=None))
    for row, s in enumerate(scales):
        expected = 0.5 * (
            wavelet_fourier(s * omega0) * np.exp(1j * omega0 * t)
            + wavelet_fourier(-s * omega0) * np.exp(-1j * omega0 * t)
        )
        np.testing.assert_allclose(ours[row], expected, atol=1e-5)


def test_batched_equals_single_and_scaleogram_shape():
    x = np.stack([_signal(400, seed=i) for i in range(5)])
    scales = np.geomspace(2, 100, 16)
    batch = np.asarray(cwt(x, scales))
    for i in range(5):
        np.testing.assert_allclose(batch[i], np.asarray(cwt(x[i], scales)), rtol=0, atol=1e-5)
    images = np.asarray(scaleogram(x, scales, (16, 32), columns=np.tile([50, 350], (5, 1))))
    assert images.shape == (5, 16, 32)
    # No resizing in scale, full width crop: the image is log|W| on the cropped columns' ends.
    full = np.asarray(scaleogram(x[0], scales, (16, 400)))
    np.testing.assert_allclose(full, np.log(np.abs(batch[0]) + 1e-6), atol=1e-4)


@pytest.mark.parametrize("f0", [1.3e3, 7.7e3, 21e3])
def test_sinusoid_peaks_in_the_row_of_its_frequency(f0):
    """The transform of ``sin(2π f₀ t)``, not the scale formula itself: on a fine log grid of
    frequencies, the row with the largest mean ``|W|`` (away from the ends) is the one for f₀."""
    fs = 250e3
    frequencies = np.geomspace(500.0, 50e3, 241)  # 2% apart
    t = np.arange(8192) / fs
    rows = np.asarray(cwt(np.sin(2 * np.pi * f0 * t), scales_for_frequencies(frequencies, fs)))
    energy = np.abs(rows[:, 1024:-1024]).mean(axis=1)
    peak = frequencies[int(np.argmax(energy))]
    assert abs(np.log(peak / f0)) <= np.log(frequencies[1] / frequencies[0])
    # The hhhat peak of ψ̂ at scale 1 solves d/du [u(1+u)e^(−u²/2)] = 0, u = ω − μ.
    u = peak_frequency() - 5.0
    assert abs(1 + 2 * u - u**2 - u**3) < 1e-3


@pytest.mark.parametrize(
    "signal, scales, wavelet, match",
    [
        (np.zeros((2, 3, 4)), [2.0], "hhhat", "1-D"),
        (np.array([1.0, np.nan, 2.0, 3.0]), [2.0], "hhhat", "NaN"),
        (np.zeros(64), [0.0, 2.0], "hhhat", "positive"),
        (np.zeros(64), [2.0], "mexican", "unknown wavelet"),
        (np.zeros(64), [2.0], ("hhhat", {"sigma": 1}), "unknown option"),
    ],
)
def test_bad_input(signal, scales, wavelet, match):
    with pytest.raises(ValueError, match=match):
        cwt(signal, scales, wavelet)


@pytest.mark.parametrize("n", [300, 1000, 1537])
def test_gmw_matches_ssqueezepy_ssq_cwt(n):
    """The authors' transform: ssqueezepy ``ssq_cwt`` with the ``gmw`` wavelet (γ = 3, β = 60,
    L1 norm) at 1 MHz; its CWT output against ours on the same scales, to 1e-5 of the largest
    coefficient (float64 reference, float32 here)."""
    ssqueezepy = pytest.importorskip("ssqueezepy")
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.standard_normal(n)) / 10 + np.sin(0.2 * np.arange(n))
    scales = np.geomspace(1.0, n / 2, 64)
    _, reference, *_ = ssqueezepy.ssq_cwt(
        x, wavelet=("gmw", {"dtype": "float64"}), scales=scales, fs=1e6
    )
    ours = np.asarray(cwt(x.astype(np.float32), scales, "gmw"))
    assert ours.shape == reference.shape == (64, n)
    assert np.max(np.abs(ours - reference)) <= 1e-5 * np.max(np.abs(reference))
    # The wavelet itself: peak 2 at ω_c = (β/γ)^(1/γ), zero at and below ω = 0.
    assert peak_frequency("gmw") == pytest.approx(20 ** (1 / 3))
    assert wavelet_fourier(np.array([20 ** (1 / 3)]), "gmw")[0] == pytest.approx(2.0)
    assert np.all(wavelet_fourier(np.array([-1.0, 0.0]), "gmw") == 0)


@pytest.mark.parametrize("n_out", [17, 32, 64])
def test_resize_weights_match_jax_antialiased_resize(n_out):
    import jax
    import jax.numpy as jnp

    x = np.random.default_rng(n_out).standard_normal(301)
    ours = resize_weights(301, n_out, 0.0, 301.0).astype(np.float64) @ x
    reference = np.asarray(jax.image.resize(jnp.asarray(x), (n_out,), "linear", antialias=True))
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    # A span: only the samples inside it are weighted, and each row sums to 1.
    weights = resize_weights(100, 8, 20.0, 60.0)
    assert np.all(weights[:, :20] == 0) and np.all(weights[:, 60:] == 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="span must satisfy"):
        resize_weights(100, 8, 50.0, 120.0)


@pytest.mark.parametrize(
    "n_in, n_out, lo, hi", [(301, 17, 0.0, 301.0), (4096, 24, 1000.0, 3011.0), (50, 64, 3.0, 40.0)]
)
def test_resize_taps_are_the_dense_weights(n_in, n_out, lo, hi):
    indices, weights = resize_taps(n_in, n_out, lo, hi)
    dense = np.zeros((n_out, n_in))
    np.add.at(dense, (np.arange(n_out)[:, None], indices), weights)
    np.testing.assert_allclose(dense, resize_weights(n_in, n_out, lo, hi), atol=1e-6)
    with pytest.raises(ValueError, match="n_taps"):
        resize_taps(n_in, n_out, lo, hi, n_taps=1)
