"""Continuous wavelet transform in JAX: FFT-based, batched, jitted.

The transform follows the conventions of ``ssqueezepy.cwt`` (frequency-domain wavelets, L1
normalisation, reflect padding) so that results agree with it to float32 round-off:

1. the signal of length ``N`` is reflect-padded to ``N_up = 2^(1 + round(log2 N))`` samples,
   ``n1 = N_up − N − ⌊(N_up − N)/2⌋`` on the left and the rest on the right;
2. ``x̂ = FFT(x_padded)`` on the radian grid ``ξ_k = 2πk/N_up`` for ``k ≤ N_up/2`` and
   ``2π(k − N_up)/N_up`` above;
3. for each scale ``s``: ``W_s = IFFT(ψ̂(s ξ) · x̂)`` with the Nyquist bin of ``ψ̂`` halved
   (even ``N_up``), cropped back to ``[n1, n1 + N)``.

No ``√s`` factor is applied: ``ψ̂(sξ)`` has the same peak at every scale, which is the L1
normalisation (a sinusoid of amplitude ``A`` at the wavelet's peak frequency gives
``|W| ≈ A·max ψ̂ / 2`` at every scale). The transform is a convolution with the (zero-phase,
real-in-frequency) wavelet.

Wavelets (``ω`` in radians per sample, scaled by ``s``):

- ``hhhat`` (Hilbert analytic Hermitian hat): ``ψ̂(ω) = (2/√5) π^(−1/4) u(1+u) e^(−u²/2)
  (1 + sign u)``, ``u = ω − μ``. The nanopore paper uses ``μ = 5``.
- ``morlet`` (admissibility-corrected): ``ψ̂(ω) = √2 c_μ π^(1/4) (e^(−(ω−μ)²/2) − κ_μ e^(−ω²/2))``,
  ``κ_μ = e^(−μ²/2)``, ``c_μ = (1 + e^(−μ²) − 2 e^(−3μ²/4))^(−1/2)``; the Fourier transform of
  ``ψ(t) = c_μ π^(−1/4) e^(−t²/2) (e^(iμt) − κ_μ)``.
- ``gmw`` (generalized Morse wavelet, first order, L1 "bandpass" normalisation as in
  ssqueezepy): ``ψ̂(ω) = 2 (ω/ω_c)^β e^(ω_c^γ − ω^γ)`` for ``ω > 0`` and 0 otherwise, with
  ``ω_c = (β/γ)^(1/γ)`` its peak (value 2); ssqueezepy's default ``γ = 3, β = 60``, the wavelet
  of the authors' scripts.

Input checks on values (NaN, spans) run only on concrete arrays, so every function here can be
called under ``jax.jit`` and ``jax.vmap``; traced calls skip them (the caller's concrete call
gets the clear error).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "WAVELETS",
    "wavelet_fourier",
    "peak_frequency",
    "scales_for_frequencies",
    "cwt",
    "scaleogram",
    "padded_length",
    "resize_weights",
    "resize_taps",
]

WAVELETS = {
    "hhhat": {"mu": 5.0},
    "morlet": {"mu": 13.4},
    "gmw": {"gamma": 3.0, "beta": 60.0},
}


def _parse_wavelet(wavelet) -> tuple[str, tuple[tuple[str, float], ...]]:
    """``(name, ((option, value), ...))`` with every option of the wavelet filled in."""
    if isinstance(wavelet, str):
        name, options = wavelet, {}
    elif isinstance(wavelet, (tuple, list)) and len(wavelet) == 2 and isinstance(wavelet[1], dict):
        name, options = wavelet
    else:
        raise ValueError(f"wavelet must be a name or (name, {{option: value}}), got {wavelet!r}")
    if name not in WAVELETS:
        raise ValueError(f"unknown wavelet {name!r}; choose from {sorted(WAVELETS)}")
    unknown = set(options) - set(WAVELETS[name])
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for wavelet {name!r}; only "
            f"{sorted(WAVELETS[name])}"
        )
    values = []
    for option, default in WAVELETS[name].items():
        value = float(options.get(option, default))
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"wavelet parameter {option} must be positive and finite, got {value}")
        values.append((option, value))
    return name, tuple(values)


def wavelet_fourier(omega, wavelet=("hhhat", {"mu": 5.0})):
    """``ψ̂(ω)`` of a wavelet (formulas in the module docstring); works on NumPy and JAX arrays."""
    name, options = _parse_wavelet(wavelet)
    xp = jnp if isinstance(omega, jax.Array) else np
    if name == "gmw":
        gamma, beta = dict(options)["gamma"], dict(options)["beta"]
        peak = (beta / gamma) ** (1 / gamma)
        positive = omega > 0
        safe = xp.where(positive, omega, 1.0)
        log_value = beta * xp.log(safe / peak) + peak**gamma - safe**gamma
        return xp.where(positive, 2 * xp.exp(log_value), 0.0)
    mu = dict(options)["mu"]
    if name == "hhhat":
        u = omega - mu
        return (
            (2 / math.sqrt(5) * math.pi**-0.25)
            * u
            * (1 + u)
            * xp.exp(-0.5 * u**2)
            * (1 + xp.sign(u))
        )
    kappa = math.exp(-0.5 * mu**2)
    c_mu = (1 + math.exp(-(mu**2)) - 2 * math.exp(-0.75 * mu**2)) ** -0.5
    return (math.sqrt(2) * c_mu * math.pi**0.25) * (
        xp.exp(-0.5 * (omega - mu) ** 2) - kappa * xp.exp(-0.5 * omega**2)
    )


def peak_frequency(wavelet=("hhhat", {"mu": 5.0})) -> float:
    """Radian frequency where ``ψ̂`` peaks at scale 1 (found on a fine grid, then refined)."""
    name, options = _parse_wavelet(wavelet)
    if name == "gmw":
        return (dict(options)["beta"] / dict(options)["gamma"]) ** (1 / dict(options)["gamma"])
    omega = np.linspace(1e-3, 4 * dict(options)["mu"] + 10, 200_001)
    values = np.abs(wavelet_fourier(omega, wavelet))
    return float(omega[int(np.argmax(values))])


def scales_for_frequencies(
    frequencies_hz: Sequence[float] | np.ndarray,
    sampling_rate: float,
    wavelet=("hhhat", {"mu": 5.0}),
) -> np.ndarray:
    """Scales whose wavelet peaks at the given frequencies: ``s = ω_peak / (2π f / f_s)``.

    Scales in samples depend on the sampling rate, so a scaleogram built from frequencies in Hz
    means the same physical thing on recordings taken at different rates.
    """
    f = np.asarray(frequencies_hz, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"frequencies_hz must be a non-empty 1-D array of positive values: {f}")
    if not (math.isfinite(sampling_rate) and sampling_rate > 0):
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    if np.any(f > sampling_rate / 2):
        raise ValueError(f"frequencies above Nyquist ({sampling_rate / 2} Hz): {f.max()}")
    return peak_frequency(wavelet) / (2 * np.pi * f / sampling_rate)


def padded_length(n: int) -> tuple[int, int]:
    """``(N_up, n1)``: padded length ``2^(1 + round(log2 N))`` and the left pad length."""
    n_up = int(2 ** (1 + round(math.log2(n))))
    return n_up, n_up - n - (n_up - n) // 2


@functools.lru_cache(maxsize=64)
def _filter_bank(name: str, options: tuple, scales: tuple[float, ...], n_up: int) -> np.ndarray:
    """``ψ̂(s ξ)`` for every scale on the padded FFT grid, Nyquist bin halved (float32)."""
    k = np.arange(n_up)
    xi = 2 * np.pi * np.where(k <= n_up // 2, k, k - n_up) / n_up
    bank = wavelet_fourier(np.asarray(scales)[:, None] * xi[None, :], (name, dict(options)))
    if n_up % 2 == 0:
        bank[:, n_up // 2] /= 2
    return bank.astype(np.float32)


# Elements of one chunk's (signals × scales × N_up) product. Transforming a few signals at a
# time keeps the complex intermediates in cache; on CPU that halves the time against one batched
# product of the whole batch.
_CHUNK_ELEMENTS = 1 << 17


@functools.partial(jax.jit, static_argnames=("n", "n_up", "n1", "padtype"))
def _cwt_core(x, bank, n, n_up, n1, padtype):
    def one(signal):
        if padtype == "reflect":
            signal = jnp.pad(signal, (n1, n_up - n - n1), mode="reflect")
        elif padtype == "zero":
            signal = jnp.pad(signal, (n1, n_up - n - n1))
        spectrum = jnp.fft.fft(signal.astype(jnp.float32))
        # The filter bank is real: two real products instead of a complex one.
        product = jax.lax.complex(bank * spectrum.real[None], bank * spectrum.imag[None])
        return jnp.fft.ifft(product, axis=-1)[:, n1 : n1 + n]

    chunk = max(1, _CHUNK_ELEMENTS // (bank.shape[0] * n_up))
    return jax.lax.map(one, x, batch_size=min(chunk, x.shape[0]))


def _check_signal(signal) -> jax.Array:
    x = jnp.asarray(signal)
    if x.ndim not in (1, 2):
        raise ValueError(f"signal must be 1-D (N,) or batched 2-D (B, N), got shape {x.shape}")
    if x.shape[-1] < 2:
        raise ValueError(f"signal must have at least 2 samples, got shape {x.shape}")
    if jnp.iscomplexobj(x):
        raise ValueError("signal must be real")
    if _is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("signal contains NaN or inf")
    return x


def _is_concrete(x) -> bool:
    """Whether ``x`` holds values (not a tracer inside ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def _check_scales(scales) -> tuple[float, ...]:
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"scales must be a non-empty 1-D array of positive numbers, got {s}")
    return tuple(float(v) for v in s)


def cwt(
    signal,
    scales,
    wavelet=("hhhat", {"mu": 5.0}),
    *,
    padtype: str | None = "reflect",
) -> jax.Array:
    """Continuous wavelet transform ``W[s, t]`` (complex64) of a real signal.

    ``signal`` is ``(N,)`` or a batch ``(B, N)``; the result is ``(len(scales), N)`` or
    ``(B, len(scales), N)``. ``padtype`` is ``"reflect"`` (ssqueezepy's default), ``"zero"`` or
    ``None`` (no padding: a circular transform of length ``N``). Scales are in samples.
    """
    x = _check_signal(signal)
    name, options = _parse_wavelet(wavelet)
    scale_tuple = _check_scales(scales)
    if padtype not in ("reflect", "zero", None):
        raise ValueError(f"padtype must be 'reflect', 'zero' or None, got {padtype!r}")
    n = x.shape[-1]
    n_up, n1 = padded_length(n) if padtype is not None else (n, 0)
    if padtype == "reflect" and n1 >= n:
        raise ValueError(f"signal of {n} samples is too short for reflect padding to {n_up}")
    bank = jnp.asarray(_filter_bank(name, options, scale_tuple, n_up))
    batched = x if x.ndim == 2 else x[None]
    coefficients = _cwt_core(batched, bank, n, n_up, n1, padtype)
    return coefficients if x.ndim == 2 else coefficients[0]


@functools.partial(jax.jit, static_argnames=("size",))
def _log_resize(magnitude, columns, size):
    """Crop columns ``[lo, hi)`` of each ``|W|`` (by linear interpolation) and resize."""
    n_scales, n = magnitude.shape[-2:]
    height, width = size
    log_magnitude = jnp.log(magnitude + 1e-6)
    # Rows: linear interpolation from n_scales to height.
    rows = jnp.linspace(0.0, n_scales - 1.0, height)
    r0 = jnp.clip(jnp.floor(rows).astype(jnp.int32), 0, n_scales - 1)
    r1 = jnp.clip(r0 + 1, 0, n_scales - 1)
    wr = rows - r0

    def one(image, span):
        lo, hi = span[0], span[1]
        cols = lo + (hi - 1.0 - lo) * jnp.linspace(0.0, 1.0, width)
        c0 = jnp.clip(jnp.floor(cols).astype(jnp.int32), 0, n - 1)
        c1 = jnp.clip(c0 + 1, 0, n - 1)
        wc = cols - c0
        left = image[:, c0] * (1 - wc) + image[:, c1] * wc
        return left[r0] * (1 - wr)[:, None] + left[r1] * wr[:, None]

    return jax.vmap(one)(log_magnitude, columns)


def scaleogram(
    signal,
    scales,
    size: tuple[int, int],
    wavelet=("hhhat", {"mu": 5.0}),
    *,
    columns=None,
) -> jax.Array:
    """Log-magnitude image ``log(|W| + 10⁻⁶)`` resized (bilinear) to ``size = (height, width)``.

    Rows run from the first scale to the last; ``columns`` (``(2,)`` or ``(B, 2)`` sample indices
    ``[lo, hi)``) crops the transform to a window before resizing, so a long context can be
    transformed (fewer edge effects) while the image shows only the event and its padding.
    Returns ``(height, width)`` or ``(B, height, width)``, float32.
    """
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and v >= 2 for v in size)
    ):
        raise ValueError(f"size must be (height, width) with integers >= 2, got {size!r}")
    coefficients = cwt(signal, scales, wavelet)
    batched = coefficients if coefficients.ndim == 3 else coefficients[None]
    n = batched.shape[-1]
    if columns is None:
        spans = jnp.tile(jnp.asarray([0.0, float(n)]), (batched.shape[0], 1))
    else:
        spans = jnp.asarray(columns, dtype=jnp.float32).reshape(-1, 2)
        if spans.shape[0] != batched.shape[0]:
            raise ValueError(f"columns has {spans.shape[0]} rows for {batched.shape[0]} signals")
        if _is_concrete(spans):
            values = np.asarray(spans)
            if np.any(values[:, 0] < 0) or np.any(values[:, 1] > n):
                raise ValueError(f"columns must satisfy 0 <= lo, lo + 2 <= hi <= {n}")
            if np.any(values[:, 1] - values[:, 0] < 2):
                raise ValueError(f"columns must satisfy 0 <= lo, lo + 2 <= hi <= {n}")
    images = _log_resize(jnp.abs(batched), spans, tuple(size))
    return images if coefficients.ndim == 3 else images[0]


def _resize_span(n_in: int, n_out: int, lo: float, hi: float) -> tuple[float, float]:
    """Check a resize of samples ``[lo, hi)`` of ``n_in`` to ``n_out``; return its ratio
    ``r = (hi − lo)/n_out`` and the triangle filter's half-width ``max(r, 1)``."""
    if not (isinstance(n_in, int) and isinstance(n_out, int) and n_in >= 1 and n_out >= 1):
        raise ValueError(f"n_in and n_out must be positive ints, got {n_in!r}, {n_out!r}")
    if not 0 <= lo < hi <= n_in:
        raise ValueError(f"span must satisfy 0 <= lo < hi <= {n_in}, got [{lo}, {hi})")
    ratio = (hi - lo) / n_out
    return ratio, max(ratio, 1.0)


def resize_weights(n_in: int, n_out: int, lo: float, hi: float) -> np.ndarray:
    """``(n_out, n_in)`` weights that resize the span ``[lo, hi)`` of ``n_in`` samples to
    ``n_out`` with a triangle filter (antialiased linear interpolation, as in PIL, torchvision
    ``Resize(antialias=True)`` and ``jax.image.resize(..., "linear", antialias=True)``).

    Output ``j`` sits at ``c_j = lo + (j + ½)·r`` (``r = (hi − lo)/n_out``, sample ``i`` at
    ``i + ½``) and weights sample ``i`` of the span by ``max(0, 1 − |i + ½ − c_j|/max(r, 1))``,
    normalised to sum 1; samples outside the span get no weight."""
    ratio, support = _resize_span(n_in, n_out, lo, hi)
    centre = lo + (np.arange(n_out) + 0.5) * ratio
    position = np.arange(n_in) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(position[None, :] - centre[:, None]) / support)
    inside = (np.arange(n_in) >= np.floor(lo)) & (np.arange(n_in) < np.ceil(hi))
    weights = weights * inside[None, :]
    total = weights.sum(axis=1, keepdims=True)
    return (weights / total).astype(np.float32)


def resize_taps(n_in: int, n_out: int, lo: float, hi: float, n_taps: int | None = None):
    """The weights of :func:`resize_weights` in sparse form: ``(indices, weights)``, both
    ``(n_out, n_taps)``, with output ``j = Σ_k weights[j, k] · x[indices[j, k]]``.

    The triangle filter of output ``j`` covers at most ``2·max(r, 1) + 2`` samples, so
    ``n_taps`` (at least that many; the default) holds it; unused taps have weight 0."""
    ratio, support = _resize_span(n_in, n_out, lo, hi)
    needed = int(np.ceil(2 * support)) + 2
    n_taps = needed if n_taps is None else n_taps
    if n_taps < needed:
        raise ValueError(f"n_taps {n_taps} is fewer than the {needed} the filter covers")
    centre = lo + (np.arange(n_out) + 0.5) * ratio
    first = np.floor(centre - support - 0.5).astype(np.int64)
    indices = first[:, None] + np.arange(n_taps)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(indices + 0.5 - centre[:, None]) / support)
    inside = (indices >= np.floor(lo)) & (indices < np.ceil(hi))
    weights = weights * inside
    weights = weights / weights.sum(axis=1, keepdims=True)
    return np.clip(indices, 0, n_in - 1).astype(np.int32), weights.astype(np.float32)
