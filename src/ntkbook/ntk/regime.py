"""The regime of a training run from its entropy curve: compression or structure formation.

Tovey et al. (2024, "Collective variables of neural networks") call a falling eNTK entropy
*information compression* and a rising one *structure formation*. Entropy curves of wide
networks often dip sharply in the first epochs and then rise for the rest of training, so the
change from the first to the last record mixes the initial transient with the trend.
:func:`regime` reads the trend after the transient: the slope of ``S`` against ``ln(epoch)``
over the last decade of records. :func:`agreed_regime` combines the regimes of several seeds,
and :func:`seed_regimes` gives a configuration's regime with intervals over its seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ntkbook.stats import Estimate, mean_interval

__all__ = [
    "COMPRESSION",
    "STRUCTURE_FORMATION",
    "UNDETERMINED",
    "MIXED",
    "REGIMES",
    "Regime",
    "regime",
    "agreed_regime",
    "SeedRegimes",
    "seed_regimes",
]

COMPRESSION = "compression"
STRUCTURE_FORMATION = "structure_formation"
UNDETERMINED = "undetermined"
#: A group of runs (seeds of one configuration) whose regimes disagree.
MIXED = "mixed"
#: The labels :func:`regime` returns.
REGIMES: tuple[str, ...] = (COMPRESSION, STRUCTURE_FORMATION, UNDETERMINED)


@dataclass(frozen=True)
class Regime:
    """The regime of one run and the numbers it was read from.

    ``label``: one of :data:`REGIMES`. ``slope``: ``dS/d ln(epoch)`` over the window (nats per
    e-fold of epochs) and ``standard_error`` its ordinary-least-squares standard error
    (``None`` with fewer than 3 records in the window). ``window``: the first and last epoch of
    the fit; ``n_records`` the records in it. ``change_from_initial = S_final − S_initial`` and
    ``change_from_minimum = S_final − min S`` (over all records, so it is ``≥ 0``).
    """

    label: str
    slope: float | None
    standard_error: float | None
    window: tuple[int, int] | None
    n_records: int
    change_from_initial: float
    change_from_minimum: float

    def as_dict(self) -> dict:
        return asdict(self)


def regime(
    epochs: Sequence[int],
    entropy: Sequence[float],
    *,
    min_slope: float = 0.01,
    z: float = 2.0,
    decades: float = 1.0,
) -> Regime:
    """Classify a run by the late trend of its entropy ``S`` (nats).

    Rule:

    1. The *window* is the records with ``epoch ≥ T / 10**decades`` (``T`` the last record's
       epoch) and ``epoch ≥ 1`` (``ln 0`` is undefined): the last decade of a log-epoch axis.
    2. Fit ``S = a + b ln(epoch)`` by ordinary least squares over the window; ``b`` is the
       slope (nats per e-fold of epochs) and ``se`` its standard error,
       ``se² = Σ r² / (n − 2) / Σ (ln e − mean)²``.
    3. ``"structure_formation"`` if ``b − z·se > min_slope``; ``"compression"`` if
       ``b + z·se < −min_slope``; otherwise ``"undetermined"``, as also when the window holds
       fewer than 3 records (no standard error).

    So a regime needs a trend that is both resolved (``z = 2`` standard errors, about 95%)
    and not negligible: ``min_slope = 0.01`` nats per e-fold is a change of 0.023 nats over a
    decade of epochs, about 0.6% of the largest entropy ``ln 50 = 3.9`` of a 50-sample kernel.
    The first-to-last change and the rise from the minimum are reported beside it
    (:class:`Regime`), not used.

    Raises:
        ValueError: lengths differ, fewer than 2 records, epochs not strictly increasing
            non-negative integers, a non-finite entropy, or non-positive ``min_slope``/``z``/
            ``decades``.
    """
    steps = np.asarray(epochs)
    values = np.asarray(entropy, dtype=np.float64)
    if steps.ndim != 1 or values.ndim != 1 or steps.shape != values.shape:
        raise ValueError(
            f"epochs and entropy must be 1-D of one length, got {steps.shape} and {values.shape}"
        )
    if steps.size < 2:
        raise ValueError(f"a regime needs at least 2 records, got {steps.size}")
    if not np.issubdtype(steps.dtype, np.integer) or np.any(steps < 0):
        raise ValueError(f"epochs must be non-negative integers, got {steps.tolist()}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"epochs must be strictly increasing, got {steps.tolist()}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"entropy contains NaN or inf: {values.tolist()}")
    for name, value in (("min_slope", min_slope), ("z", z), ("decades", decades)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    last = int(steps[-1])
    inside = (steps >= max(1.0, last / 10.0**decades)) & (steps >= 1)
    change_from_initial = float(values[-1] - values[0])
    change_from_minimum = float(values[-1] - values.min())
    n = int(inside.sum())
    window = (int(steps[inside][0]), last) if n else None
    if n < 3:
        return Regime(UNDETERMINED, None, None, window, n, change_from_initial, change_from_minimum)
    x = np.log(steps[inside].astype(np.float64))
    y = values[inside]
    centred = x - x.mean()
    slope = float(np.sum(centred * (y - y.mean())) / np.sum(centred**2))
    residuals = y - y.mean() - slope * centred
    standard_error = float(np.sqrt(np.sum(residuals**2) / (n - 2) / np.sum(centred**2)))
    if slope - z * standard_error > min_slope:
        label = STRUCTURE_FORMATION
    elif slope + z * standard_error < -min_slope:
        label = COMPRESSION
    else:
        label = UNDETERMINED
    return Regime(label, slope, standard_error, window, n, change_from_initial, change_from_minimum)


def agreed_regime(labels: Iterable[str]) -> str:
    """The regime of a group of runs (seeds of one configuration): their common label when
    they all agree, :data:`MIXED` otherwise.

    Raises:
        ValueError: no labels, or a label that is not one of :data:`REGIMES`.
    """
    labels = list(labels)
    if not labels:
        raise ValueError("agreed_regime needs at least one label")
    unknown = [label for label in labels if label not in REGIMES]
    if unknown:
        raise ValueError(f"unknown regimes {unknown}; valid: {', '.join(REGIMES)}")
    return labels[0] if len(set(labels)) == 1 else MIXED


@dataclass(frozen=True)
class SeedRegimes:
    """The regime of one configuration trained with several seeds.

    ``label``: :func:`agreed_regime` of the seeds' labels (``"mixed"`` when they disagree).
    ``runs``: each seed's :class:`Regime`. ``slope``, ``change_from_initial`` and
    ``change_from_minimum``: the mean over seeds with its Student-t interval
    (:func:`ntkbook.stats.mean_interval`), ``None`` with a single seed (and ``slope`` also when
    a seed has no slope).
    """

    label: str
    runs: tuple[Regime, ...]
    slope: Estimate | None
    change_from_initial: Estimate | None
    change_from_minimum: Estimate | None

    def as_dict(self) -> dict:
        def estimate(value):
            return None if value is None else value.as_dict()

        return {
            "label": self.label,
            "runs": [run.as_dict() for run in self.runs],
            "slope": estimate(self.slope),
            "change_from_initial": estimate(self.change_from_initial),
            "change_from_minimum": estimate(self.change_from_minimum),
        }


def seed_regimes(
    curves: Iterable[tuple[Sequence[int], Sequence[float]]],
    *,
    confidence: float = 0.95,
    **rule,
) -> SeedRegimes:
    """:func:`regime` of each seed's ``(epochs, entropy)`` curve (``rule``: its keyword
    arguments), their agreed label, and means over seeds with ``confidence`` intervals.

    Raises:
        ValueError: no curves, or a curve :func:`regime` refuses.
    """
    runs = tuple(regime(epochs, entropy, **rule) for epochs, entropy in curves)
    if not runs:
        raise ValueError("seed_regimes needs at least one curve")
    label = agreed_regime(run.label for run in runs)

    def interval(values):
        if len(values) < 2 or any(v is None for v in values):
            return None
        return mean_interval(values, confidence=confidence)

    return SeedRegimes(
        label,
        runs,
        interval([run.slope for run in runs]),
        interval([run.change_from_initial for run in runs]),
        interval([run.change_from_minimum for run in runs]),
    )
