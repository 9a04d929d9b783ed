"""Synthetic nanopore recordings of peptide translocations: each class in its own runs.

**Synthetic.** The measured data of the peptide paper is not public; this simulator produces a
trace with the physics that the classification pipeline has to cope with, and every parameter
of :class:`PoreParameters` says where its magnitude comes from. Magnitudes marked *assumed* are
choices of this book within the ranges the cited sources describe, not measured values.

Classes: 6 peptide ladders × 7 lengths (4- to 10-mer), class index ``7·ladder + (length − 4)``,
so sorting by index sorts by ladder, then length. The recorded current is

``I(t) = H * [ I_0(t) · r(t) + n_blocked(t) ] + n(t) + m(t)``

with ``I_0(t) = I_0 (1 + d·t)`` the open-pore current with linear drift ``d``, ``r(t) = 1`` when
the pore is open and ``r(t) = ρ_e + a_ℓ (σ(t) − ½)`` during event ``e`` (``ρ_e`` the event's
residual-current level, ``σ(t) ∈ {0, 1}`` a two-state Markov chain of sub-levels switching at
rate ``k_ℓ`` per state, ``a_ℓ`` its amplitude), ``n_blocked`` extra white noise inside events,
``H`` the Bessel low-pass filter of the amplifier, ``n`` noise with one-sided power spectral
density ``S(f) = A/f + B + C f + D f²`` (flicker, white, dielectric, capacitive;
Rosenstein et al. 2012) shaped by ``H`` as well, and ``m`` mains pickup.

Per event: residual level ``ρ_e ~ N(ρ̄_c, (overlap · Δρ_ladder)²)``, dwell ``τ_e ~ Exp(τ̄_c)``,
gap to the next event ``~ Exp(mean_gap)``. The trace starts and ends with ``edge_open_time`` of
open pore before the first and after the last gap, so every event has open pore on both sides
(an event cut by the start or end of a recording cannot be measured). Class means:
``ρ̄ = ρ_10mer + Δρ_length·(10 − length) + Δρ_ladder·ladder``, so longer peptides block more
and neighbouring ladders interleave.

:func:`simulate` draws one continuous trace (of any set of classes); :func:`simulate_runs`
records every class in its own runs, as the measured peptides were, each run on a pore of its
own whose open-pore current and noise power differ from the next
(``pore_open_current_spread``, ``pore_noise_spread``), so run-to-run shifts go with the label
as they do in measured data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import jax
import numpy as np
import scipy.signal

from ntkbook.nanopore.trace import Trace

__all__ = [
    "N_LADDERS",
    "LENGTHS",
    "N_CLASSES",
    "CLASS_NAMES",
    "PoreParameters",
    "SimulatedRecording",
    "class_index",
    "class_levels",
    "class_dwell_means",
    "noise_psd",
    "bessel_response",
    "group_delay",
    "simulate",
    "simulate_runs",
]

N_LADDERS = 6
LENGTHS = tuple(range(4, 11))
N_CLASSES = N_LADDERS * len(LENGTHS)
LADDER_NAMES = tuple("ABCDEF")
CLASS_NAMES = tuple(f"{ladder}{length}" for ladder in LADDER_NAMES for length in LENGTHS)


def class_index(ladder: int, length: int) -> int:
    """Class index ``7·ladder + (length − 4)`` (ladder 0–5, length 4–10)."""
    if not (0 <= ladder < N_LADDERS) or length not in LENGTHS:
        raise ValueError(f"no class for ladder {ladder}, length {length}")
    return ladder * len(LENGTHS) + LENGTHS.index(length)


@dataclass(frozen=True)
class PoreParameters:
    """Physical parameters of the synthetic recording (SI units: s, Hz, pA)."""

    sampling_rate: float = 1e6
    """Hz. Aerolysin recordings are sampled at up to 1 MHz (Ouldali et al. 2020), and the
    authors' scripts work at 1 MHz (SamTov/projects ``nanopore-lab/``)."""
    filter_cutoff: float = 10e3
    """Hz, −3 dB point of the amplifier's low-pass (10 kHz, Ouldali et al. 2020)."""
    filter_order: int = 4
    """Poles of the Bessel filter (4-pole, Ouldali et al. 2020)."""
    open_pore_current: float = 250.0
    """pA, open-pore current ``I_0``. Assumed order of magnitude for aerolysin in 4 M KCl at
    −50 mV (the conditions of Ouldali et al. 2020); the pipeline works with ``I/I_0``, so only
    the ratio to the noise matters."""
    drift: float = 0.005
    """1/s, relative linear drift of ``I_0`` (assumed; baseline drift is named among the
    artefacts of real recordings in Ouldali et al. 2020)."""
    mains_amplitude: float = 0.3
    """pA, amplitude of the mains pickup (assumed)."""
    mains_frequency: float = 50.0
    """Hz, mains frequency (50 Hz grid, as in Europe where the cited measurements were made)."""
    flicker: float = 1e-3
    """``A`` in pA², flicker (1/f) term of the noise PSD (Rosenstein et al. 2012; assumed value)."""
    white: float = 1e-4
    """``B`` in pA²/Hz, white term (thermal and shot noise; Rosenstein et al. 2012). With the
    other terms and the default 10 kHz Bessel filter it gives about 1.36 pA RMS of open-pore
    noise, ``√∫ S(f)|H(f)|² df`` (assumed)."""
    dielectric: float = 1e-9
    """``C`` in pA²/Hz², dielectric (∝ f) term (Rosenstein et al. 2012; assumed value)."""
    capacitive: float = 1e-12
    """``D`` in pA²/Hz³, capacitive (∝ f²) term, equal to the white term at 10 kHz
    (Rosenstein et al. 2012; assumed value)."""
    blocked_variance_ratio: float = 3.0
    """Variance of the blocked state over the open state's (about 3×, Ouldali et al. 2020)."""
    level_10mer: float = 0.385
    """``ρ_10mer``, residual current ``I/I_0`` of the longest peptide of ladder 0 (an example
    value of Ouldali et al. 2020 is ``I/I_0 ≈ 0.385``)."""
    level_step_length: float = 0.06
    """``Δρ_length``, change of ``I/I_0`` per amino acid (longer peptides block more: size
    discrimination in aerolysin, Ouldali et al. 2020; the step is assumed)."""
    level_step_ladder: float = 0.01
    """``Δρ_ladder``, offset between ladders (assumed; ladders interleave, so the 42 mean levels
    are 0.01 apart and overlap as in the blockade histograms of Hoßbach et al. 2024)."""
    overlap: float = 0.5
    """Class overlap: event-to-event standard deviation of ``ρ_e`` in units of
    ``Δρ_ladder``, the spacing between neighbouring class means. The one knob for how hard the
    task is (at 0.5, neighbours are 2σ apart); the chapter reports accuracy against it."""
    dwell_mean: float = 250e-6
    """s, mean dwell ``τ̄`` of a 4-mer of ladder 0 (dwell times are exponential, µs–ms;
    Ouldali et al. 2020). Class means are ``τ̄_c = τ̄ (1 + g_length (length − 4))(1 + g_ladder
    ladder)``."""
    dwell_step_length: float = 0.2
    """``g_length``, relative increase of the mean dwell per residue (longer peptides dwell
    longer, Ouldali et al. 2020; the factor is assumed)."""
    dwell_step_ladder: float = 0.1
    """``g_ladder``, relative increase of the mean dwell per ladder (assumed: ladders differ in
    composition, which changes how long they stay in the pore)."""
    mean_gap: float = 4e-3
    """s, mean open-pore time between events (capture rate; assumed). At 4 ms the pore is
    open most of every 5 ms window of the authors' baseline (5,000 samples at 1 MHz), so the
    window median is the open-pore level even in runs of the longest-dwelling class; at 1 ms
    some of those windows were mostly blocked and their events went undetected."""
    edge_open_time: float = 2e-3
    """s, open pore at the start and at the end of the trace, added to the first and last gap
    (a recording is started and stopped with the pore open; this also leaves room for the
    padding around the first and last events)."""
    switch_rate: float = 500.0
    """Hz, sub-level switching rate ``k_0`` of ladder 0; ladder ℓ switches at
    ``k_ℓ = k_0 r^ℓ`` (sub-level fluctuations inside blockades, Hoßbach et al. 2024; assumed)."""
    switch_rate_ratio: float = 1.8
    """``r``, ratio of the switching rates of neighbouring ladders (assumed; 1.8 spreads the
    six ladders over 0.5–9.4 kHz, inside the 10 kHz filter band)."""
    switch_amplitude: float = 0.005
    """``a_ℓ`` in units of ``I_0``: the two sub-levels are ``ρ_e ± a/2`` (assumed). The default
    is half the class spacing ``Δρ_ladder``, so the texture is a cue beside the level without
    swamping it; a larger value (the former default, 0.02, was twice the spacing) makes the
    sub-levels blur neighbouring classes."""
    pore_open_current_spread: float = 0.05
    """Relative standard deviation of ``I_0`` from one pore (run) to the next in
    :func:`simulate_runs` (assumed: single aerolysin pores differ by a few per cent in
    conductance, and each peptide of the paper was measured in its own runs)."""
    pore_noise_spread: float = 0.3
    """Standard deviation of ``ln`` of the noise power factor from one pore (run) to the next
    in :func:`simulate_runs` (assumed: the noise of a nanopore setup changes from pore to pore
    and from day to day, Rosenstein et al. 2012 describe its sources)."""
    filter_margin: float = 10e-3
    """s, extra trace simulated on both sides and cut afterwards: it absorbs the circular edge
    of the FFT-based filtering (many times the filter's impulse response of ~0.1 ms)."""

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"PoreParameters.{name} must be a finite number, got {value!r}")
        positive = (
            "sampling_rate filter_cutoff filter_order open_pore_current dwell_mean mean_gap "
            "switch_rate switch_rate_ratio blocked_variance_ratio level_step_length "
            "level_step_ladder mains_frequency filter_margin"
        ).split()
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"PoreParameters.{name} must be positive, got {getattr(self, name)}"
                )
        for name in (
            "flicker white dielectric capacitive overlap mains_amplitude dwell_step_length "
            "dwell_step_ladder edge_open_time pore_open_current_spread pore_noise_spread"
        ).split():
            if getattr(self, name) < 0:
                raise ValueError(f"PoreParameters.{name} must be >= 0, got {getattr(self, name)}")
        if self.blocked_variance_ratio < 1:
            raise ValueError("blocked_variance_ratio must be >= 1")
        if self.filter_cutoff >= self.sampling_rate / 2:
            raise ValueError(
                f"filter_cutoff {self.filter_cutoff} Hz must be below Nyquist "
                f"({self.sampling_rate / 2} Hz)"
            )
        fastest = self.switch_rate * self.switch_rate_ratio ** (N_LADDERS - 1)
        if fastest / self.sampling_rate > 0.5:
            # The per-sample switch probability k/f_s of the Markov chain must stay <= 1/2.
            raise ValueError(
                f"switching rate of the fastest ladder ({fastest:g} Hz) must be at most half "
                f"the sampling rate ({self.sampling_rate:g} Hz)"
            )

    def with_changes(self, **changes) -> PoreParameters:
        """A copy with some fields changed; unknown names are an error."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown PoreParameters field(s): {sorted(unknown)}")
        return replace(self, **changes)


@dataclass(frozen=True)
class SimulatedRecording:
    """A synthetic trace and its ground truth, one entry per translocation event.

    ``start``/``end`` (exclusive) are sample indices where the event appears in the recorded
    (filtered) trace: the ideal boundaries shifted by the filter's group delay.
    """

    trace: Trace
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    level: np.ndarray
    pore: PoreParameters = field(default_factory=PoreParameters)


def class_levels(pore: PoreParameters) -> np.ndarray:
    """Mean residual current ``ρ̄_c = I/I_0`` of every class, shape ``(42,)``."""
    ladder, length = np.divmod(np.arange(N_CLASSES), len(LENGTHS))
    length = length + LENGTHS[0]
    return (
        pore.level_10mer
        + pore.level_step_length * (LENGTHS[-1] - length)
        + pore.level_step_ladder * ladder
    )


def class_dwell_means(pore: PoreParameters) -> np.ndarray:
    """Mean dwell ``τ̄_c`` in seconds of every class, shape ``(42,)``."""
    ladder, length = np.divmod(np.arange(N_CLASSES), len(LENGTHS))
    return (
        pore.dwell_mean
        * (1 + pore.dwell_step_length * length)
        * (1 + pore.dwell_step_ladder * ladder)
    )


def noise_psd(frequency: np.ndarray, pore: PoreParameters) -> np.ndarray:
    """One-sided ``S(f) = A/f + B + C f + D f²`` in pA²/Hz (0 at ``f = 0``)."""
    f = np.asarray(frequency, dtype=np.float64)
    with np.errstate(divide="ignore"):
        flicker = np.where(f > 0, pore.flicker / np.where(f > 0, f, 1.0), 0.0)
    psd = flicker + pore.white + pore.dielectric * f + pore.capacitive * f**2
    return np.where(f > 0, psd, 0.0)


def bessel_response(frequency: np.ndarray, pore: PoreParameters) -> np.ndarray:
    """Complex response ``H(f)`` of the analog Bessel low-pass (−3 dB at ``filter_cutoff``)."""
    b, a = scipy.signal.bessel(
        int(pore.filter_order), 2 * np.pi * pore.filter_cutoff, analog=True, norm="mag"
    )
    _, h = scipy.signal.freqs(b, a, worN=2 * np.pi * np.asarray(frequency, dtype=np.float64))
    return h


def group_delay(pore: PoreParameters) -> float:
    """Low-frequency group delay ``−dφ/dω`` of the Bessel filter, in seconds."""
    f = np.array([0.0, pore.filter_cutoff * 1e-3])
    phase = np.unwrap(np.angle(bessel_response(f, pore)))
    return float(-(phase[1] - phase[0]) / (2 * np.pi * (f[1] - f[0])))


def simulate(
    key: jax.Array,
    n_events_per_class: int,
    pore: PoreParameters | None = None,
    classes: tuple[int, ...] | None = None,
) -> SimulatedRecording:
    """Simulate one continuous synthetic trace with ``n_events_per_class`` events of each class.

    Event order is a random permutation of the balanced label list. ``classes`` restricts the
    recording to some classes (a single-ladder run, say); by default all 42.
    """
    pore = pore or PoreParameters()
    if not isinstance(n_events_per_class, int) or n_events_per_class < 1:
        raise ValueError(f"n_events_per_class must be a positive int, got {n_events_per_class!r}")
    classes = tuple(range(N_CLASSES)) if classes is None else tuple(classes)
    if not classes or any(not (0 <= c < N_CLASSES) for c in classes):
        raise ValueError(f"classes must be indices in [0, {N_CLASSES}), got {classes}")
    fs = pore.sampling_rate
    # One jax.random key seeds a NumPy generator: the same key gives the same trace, and the
    # bulk draws avoid compiling a JAX sampler for every trace length.
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    labels = np.repeat(np.asarray(classes), n_events_per_class)
    labels = labels[rng.permutation(labels.size)]
    n = labels.size

    dwell = rng.exponential(size=n) * class_dwell_means(pore)[labels]
    dwell_samples = np.maximum(1, np.round(dwell * fs)).astype(np.int64)
    gap = rng.exponential(size=n + 1) * pore.mean_gap
    gap[[0, -1]] += pore.edge_open_time
    gap_samples = np.maximum(1, np.round(gap * fs)).astype(np.int64)
    sigma = pore.overlap * pore.level_step_ladder
    level = class_levels(pore)[labels] + sigma * rng.standard_normal(n)

    # Margins on both sides absorb the circular edge of the FFT filter; they are cut afterwards.
    margin = int(round(pore.filter_margin * fs))
    starts = (
        margin + np.cumsum(gap_samples[:n]) + np.concatenate([[0], np.cumsum(dwell_samples)[:-1]])
    )
    ends = starts + dwell_samples
    total = int(ends[-1] + gap_samples[n] + 2 * margin)

    # Per-sample event index (-1 open) via the sorted boundaries.
    idx = np.arange(total)
    event_of = np.searchsorted(starts, idx, side="right") - 1
    inside = (event_of >= 0) & (idx < ends[np.maximum(event_of, 0)])
    event_of = np.where(inside, event_of, -1)
    ladder = labels // len(LENGTHS)

    # Two-state chain with equal rates k per state: per sample, a switch happens with
    # probability k/fs, and the state is the parity of the number of switches so far.
    rate = pore.switch_rate * pore.switch_rate_ratio ** ladder[np.maximum(event_of, 0)]
    switch_probability = np.where(inside, rate / fs, 0.0)
    uniform = rng.random(total)
    state = np.cumsum(uniform < switch_probability) % 2

    relative = np.where(
        inside, level[np.maximum(event_of, 0)] + pore.switch_amplitude * (state - 0.5), 1.0
    )
    time = idx / fs
    open_current = pore.open_pore_current * (1 + pore.drift * time)
    ideal = open_current * relative

    frequency = np.fft.rfftfreq(total, 1 / fs)
    response = bessel_response(frequency, pore)
    psd = noise_psd(frequency, pore)
    white = rng.standard_normal(total)
    noise_spectrum = np.fft.rfft(white) * np.sqrt(psd * fs / 2)
    # Extra white noise in the blocked state so that its filtered variance is
    # blocked_variance_ratio times the open state's.
    open_variance = np.sum(psd * np.abs(response) ** 2) * (frequency[1] - frequency[0])
    bandwidth = np.sum(np.abs(response) ** 2) * (frequency[1] - frequency[0])
    extra_psd = (pore.blocked_variance_ratio - 1) * open_variance / bandwidth
    blocked_noise = np.where(inside, rng.standard_normal(total) * np.sqrt(extra_psd * fs / 2), 0.0)
    recorded_spectrum = (np.fft.rfft(ideal + blocked_noise) + noise_spectrum) * response
    recorded = np.fft.irfft(recorded_spectrum, n=total)
    recorded += pore.mains_amplitude * np.sin(2 * np.pi * pore.mains_frequency * time)

    delay = int(round(group_delay(pore) * fs))
    keep = slice(margin, total - margin)
    trace = Trace(
        current=recorded[keep].astype(np.float32),
        sampling_rate=fs,
        synthetic=True,
        description=(
            f"synthetic nanopore trace, {n} events of {len(classes)} classes, "
            f"{(total - 2 * margin) / fs:.2f} s at {fs / 1e3:g} kHz"
        ),
    )
    return SimulatedRecording(
        trace=trace,
        start=starts - margin + delay,
        end=ends - margin + delay,
        label=labels,
        level=level,
        pore=pore,
    )


def simulate_runs(
    key: jax.Array,
    n_events_per_class: int,
    pore: PoreParameters | None = None,
    *,
    runs_per_class: int = 2,
    classes: tuple[int, ...] | None = None,
) -> list[SimulatedRecording]:
    """Every class recorded alone in ``runs_per_class`` runs, each on its own pore.

    Run ``r`` of class ``c`` uses ``I_0 · (1 + s_I ε)`` and every noise term × ``e^(s_n ε')``
    (``ε, ε' ~ N(0, 1)`` per run, ``s_I = pore_open_current_spread``,
    ``s_n = pore_noise_spread``) and holds ``n_events_per_class / runs_per_class`` events
    (the first runs take the remainder). Returns the runs class by class."""
    pore = pore or PoreParameters()
    if not isinstance(runs_per_class, int) or runs_per_class < 1:
        raise ValueError(f"runs_per_class must be a positive int, got {runs_per_class!r}")
    if not isinstance(n_events_per_class, int) or n_events_per_class < runs_per_class:
        raise ValueError(
            f"n_events_per_class ({n_events_per_class!r}) must be an int >= runs_per_class "
            f"({runs_per_class}): every run needs an event"
        )
    classes = tuple(range(N_CLASSES)) if classes is None else tuple(classes)
    per_run = np.full(runs_per_class, n_events_per_class // runs_per_class)
    per_run[: n_events_per_class % runs_per_class] += 1
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    keys = jax.random.split(key, len(classes) * runs_per_class)
    runs = []
    for i, c in enumerate(classes):
        for r in range(runs_per_class):
            current_factor = 1 + pore.pore_open_current_spread * rng.standard_normal()
            if current_factor <= 0:
                raise ValueError(
                    f"pore_open_current_spread {pore.pore_open_current_spread} drew a "
                    "non-positive open-pore current"
                )
            noise_factor = float(np.exp(pore.pore_noise_spread * rng.standard_normal()))
            run_pore = pore.with_changes(
                open_pore_current=pore.open_pore_current * current_factor,
                flicker=pore.flicker * noise_factor,
                white=pore.white * noise_factor,
                dielectric=pore.dielectric * noise_factor,
                capacitive=pore.capacitive * noise_factor,
            )
            runs.append(
                simulate(keys[i * runs_per_class + r], int(per_run[r]), run_pore, classes=(c,))
            )
    return runs
