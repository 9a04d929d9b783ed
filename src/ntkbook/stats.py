"""Statistics for the chapters: correlations with uncertainty, means with standard errors.

Correlations come with a confidence interval, either from the Fisher z-transform (closed form)
or from a percentile bootstrap over samples (resampling drawn with an explicit ``jax.random``
key). Means over seeds come with their standard error ``s/√n``. The intervals that the claims
ledger (:mod:`ntkbook.book.claims`) takes are :class:`Estimate` objects: a Student-t interval
of a mean over seeds, a percentile bootstrap of any statistic, and the exact (Clopper–Pearson)
interval of a binomial proportion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import jax
import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "pooled_correlation",
    "Correlation",
    "pearson",
    "spearman",
    "correlation",
    "MeanError",
    "mean_standard_error",
    "paired_difference",
    "Estimate",
    "mean_interval",
    "bootstrap_interval",
    "binomial_interval",
    "largest",
    "smallest",
    "magnitude",
]

Interval = Literal["fisher", "bootstrap"]


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its ``confidence`` interval ``[low, high]``.

    ``p_value`` is two-sided for the null hypothesis of no correlation (t-test with ``n − 2``
    degrees of freedom, as scipy's ``spearmanr`` and, in closed form, ``pearsonr`` use).
    ``standard_error`` is the Fisher-z standard error mapped back to the coefficient scale
    (``(1 − r²)·se_z``) or, for the bootstrap, the standard deviation of the resampled
    coefficients. ``n_resamples`` is the number of bootstrap resamples that entered the
    interval (resamples with a constant variable have no correlation and are counted in
    ``n_degenerate``); both are 0 for the Fisher interval.
    """

    method: str
    coefficient: float
    low: float
    high: float
    standard_error: float
    p_value: float
    confidence: float
    interval: str
    n: int
    n_resamples: int = 0
    n_degenerate: int = 0

    def as_dict(self) -> dict:
        """The fields as a plain dict (for ``write_summary``)."""
        return asdict(self)

    def __str__(self) -> str:
        level = f"{100 * self.confidence:g}%"
        return (
            f"{self.coefficient:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({level} CI, "
            f"{self.interval}), p = {self.p_value:.2g}"
        )


def _check_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.size != y.size:
        raise ValueError(f"x has {x.size} values but y has {y.size}")
    for name, values in (("x", x), ("y", y)):
        if not np.all(np.isfinite(values)):
            first = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{name} contains NaN or inf at index {first}")
        if values.size and np.all(values == values[0]):
            raise ValueError(f"{name} is constant ({values[0]}): its correlation is undefined")
    if x.size < 4:
        raise ValueError(f"a correlation with an interval needs at least 4 pairs, got {x.size}")
    return x, y


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties given their average rank (1-based)."""
    return _scipy_stats.rankdata(values, axis=-1)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``r = Σ(x−x̄)(y−ȳ) / √(Σ(x−x̄)² Σ(y−ȳ)²)`` along the last axis (NaN if one is constant)."""
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(dx * dx, axis=-1) * np.sum(dy * dy, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(dx * dy, axis=-1) / denominator
    return np.where(denominator > 0, np.clip(r, -1.0, 1.0), np.nan)


def _p_value(r: float, n: int, partialled: int = 0) -> float:
    """Two-sided t-test of ``r = 0`` on ``n − 2 − partialled`` degrees of freedom."""
    if abs(r) >= 1.0:
        return 0.0
    dof = n - 2 - partialled
    t = r * np.sqrt(dof / (1.0 - r * r))
    return float(2.0 * _scipy_stats.t.sf(abs(t), dof))


def _fisher_bounds(r: float, se_z: float, confidence: float) -> tuple[float, float]:
    """``tanh(artanh r ± z_{(1+c)/2} se_z)``: the Fisher interval of a correlation."""
    z_crit = _scipy_stats.norm.ppf(0.5 + confidence / 2.0)
    z = np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15))
    return float(np.tanh(z - z_crit * se_z)), float(np.tanh(z + z_crit * se_z))


def correlation(
    x,
    y,
    *,
    method: Literal["pearson", "spearman"] = "pearson",
    interval: Interval = "fisher",
    confidence: float = 0.95,
    key: jax.Array | None = None,
    n_resamples: int = 2000,
) -> Correlation:
    """Pearson or Spearman correlation of ``x`` and ``y`` with a confidence interval.

    Pearson: ``r = Σ(x−x̄)(y−ȳ) / √(Σ(x−x̄)² Σ(y−ȳ)²)``; Spearman: the same on the ranks (ties
    averaged). ``interval="fisher"``: ``z = artanh r`` is close to normal with standard error
    ``1/√(n−3)`` (Pearson) or ``√(1.06/(n−3))`` (Spearman; Fieller, Hartley & Pearson 1957),
    and the interval is ``tanh(z ± z_{(1+c)/2} se)``; it is undefined (a ``ValueError``) for a
    perfect correlation ``|r| = 1``. ``interval="bootstrap"``: ``n_resamples``
    resamples of the ``n`` pairs with replacement, drawn with ``key`` (required), and the
    percentile interval of the resampled coefficients.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"unknown correlation method {method!r}; choose 'pearson' or 'spearman'")
    if interval not in ("fisher", "bootstrap"):
        raise ValueError(f"unknown interval {interval!r}; choose 'fisher' or 'bootstrap'")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x, y = _check_pair(x, y)
    n = x.size

    def coefficient_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if method == "spearman":
            a, b = _ranks(a), _ranks(b)
        return _pearson_rows(a, b)

    r = float(coefficient_of(x, y))
    p_value = _p_value(r, n)
    if interval == "fisher":
        if abs(r) >= 1.0 - 1e-12:
            # z = artanh(±1) is infinite: the Fisher interval would collapse to the point ±1,
            # a certainty that a handful of points cannot give.
            raise ValueError(
                f"the {method} correlation of these {n} pairs is {r:+.0f}, where the Fisher "
                "interval is undefined; use interval='bootstrap' or more pairs"
            )
        se_z = np.sqrt((1.06 if method == "spearman" else 1.0) / (n - 3))
        low, high = _fisher_bounds(r, se_z, confidence)
        return Correlation(
            method=method,
            coefficient=r,
            low=low,
            high=high,
            standard_error=float((1.0 - r * r) * se_z),
            p_value=p_value,
            confidence=confidence,
            interval=interval,
            n=n,
        )
    if key is None:
        raise ValueError("interval='bootstrap' resamples: pass an explicit jax.random key")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"n_resamples must be an integer >= 100, got {n_resamples!r}")
    resample = np.asarray(jax.random.randint(key, (n_resamples, n), 0, n))
    resampled = coefficient_of(x[resample], y[resample])
    degenerate = int(np.sum(np.isnan(resampled)))
    kept = resampled[~np.isnan(resampled)]
    if kept.size < n_resamples // 2:
        raise ValueError(
            f"{degenerate} of {n_resamples} bootstrap resamples have a constant variable; "
            "the data have too few distinct values for a bootstrap interval"
        )
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(kept, [tail, 100.0 - tail])
    return Correlation(
        method=method,
        coefficient=r,
        low=float(low),
        high=float(high),
        standard_error=float(np.std(kept, ddof=1)),
        p_value=p_value,
        confidence=confidence,
        interval=interval,
        n=n,
        n_resamples=int(kept.size),
        n_degenerate=degenerate,
    )


def pearson(x, y, **options) -> Correlation:
    """Pearson correlation with a confidence interval (see :func:`correlation`)."""
    return correlation(x, y, method="pearson", **options)


def spearman(x, y, **options) -> Correlation:
    """Spearman rank correlation with a confidence interval (see :func:`correlation`)."""
    return correlation(x, y, method="spearman", **options)


def pooled_correlation(x, y, groups, *, confidence: float = 0.95) -> Correlation:
    """Pearson correlation of ``x`` and ``y`` pooled over groups, with the group partialled out.

    Each variable has its group mean subtracted (the residuals of a regression on one indicator
    per group), and ``r`` is the Pearson correlation of the residuals: the partial correlation
    given the group, here the training-set size, which moves the collective variables and the
    accuracy together. Its Fisher interval is ``tanh(artanh r ± z se)`` with
    ``se = 1/√(n − 3 − (G − 1))`` for ``G`` groups (``G − 1`` variables partialled out); the
    p-value is the t-test with ``n − 2 − (G − 1)`` degrees of freedom.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x, y = _check_pair(x, y)
    groups = np.asarray(groups)
    if groups.shape != x.shape:
        raise ValueError(f"groups must be 1-D with one label per pair, got shape {groups.shape}")
    labels, group_index = np.unique(groups, return_inverse=True)
    n, partialled = x.size, labels.size - 1
    if n - 3 - partialled < 1:
        raise ValueError(
            f"{n} pairs in {labels.size} groups are too few for a pooled correlation (needs "
            f"n − 3 − (G − 1) >= 1)"
        )

    def residuals(values: np.ndarray) -> np.ndarray:
        means = np.bincount(group_index, weights=values) / np.bincount(group_index)
        return values - means[group_index]

    dx, dy = residuals(x), residuals(y)
    denominator = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if denominator == 0:
        raise ValueError("x or y is constant within every group: the correlation is undefined")
    r = float(np.clip(np.sum(dx * dy) / denominator, -1.0, 1.0))
    if abs(r) >= 1.0 - 1e-12:
        raise ValueError(
            f"the pooled correlation is {r:+.0f}, where the Fisher interval is undefined"
        )
    se_z = 1.0 / np.sqrt(n - 3 - partialled)
    low, high = _fisher_bounds(r, se_z, confidence)
    return Correlation(
        method="pearson",
        coefficient=r,
        low=low,
        high=high,
        standard_error=float((1.0 - r * r) * se_z),
        p_value=_p_value(r, n, partialled),
        confidence=confidence,
        interval="fisher",
        n=n,
    )


@dataclass(frozen=True)
class MeanError:
    """Mean and standard error of the mean over ``n`` repeats (arrays for an axis reduction)."""

    mean: np.ndarray | float
    standard_error: np.ndarray | float
    n: int


def mean_standard_error(values, axis: int = 0) -> MeanError:
    """Mean ``x̄`` and standard error ``s/√n`` along ``axis`` (``s`` with ``n − 1``).

    Needs at least two repeats; NaN or inf raises.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        raise ValueError("values must have at least one axis of repeats")
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"a standard error needs at least 2 repeats along axis {axis}, got {n}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values contain NaN or inf")
    mean = values.mean(axis=axis)
    error = values.std(axis=axis, ddof=1) / np.sqrt(n)
    if mean.ndim == 0:
        return MeanError(float(mean), float(error), n)
    return MeanError(mean, error, n)


def paired_difference(a, b, axis: int = 0) -> MeanError:
    """Mean and standard error of the paired differences ``a − b`` along ``axis``.

    Pairs share everything but the compared factor (here: the seed), so the spread between
    seeds cancels and the error is that of ``d_s = a_s − b_s``, ``s_d/√n``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    return mean_standard_error(a - b, axis=axis)


@dataclass(frozen=True)
class Estimate:
    """A statistic with its ``confidence`` interval ``[low, high]``.

    ``method`` names how the interval was computed (``"t"``, ``"bootstrap"``,
    ``"clopper-pearson"``) and ``n`` how many independent values (seeds, subsets, trials) it rests
    on. ``str()`` gives ``value [low, high]``.
    """

    value: float
    low: float
    high: float
    method: str
    n: int
    confidence: float = 0.95

    @property
    def interval(self) -> tuple[float, float]:
        """``(low, high)``, as :meth:`ntkbook.book.claims.Ledger.test` takes it."""
        return (self.low, self.high)

    def as_dict(self) -> dict:
        """The fields as a plain dict (for ``write_summary``)."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _repeats(values, name: str = "values") -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per repeat), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{name} contains NaN or inf at index {first}")
    return values


def mean_interval(values, confidence: float = 0.95) -> Estimate:
    """Mean of independent repeats with the Student-t interval ``x̄ ± t_{n−1} s/√n``.

    The t interval is the right one for a handful of seeds, where a percentile bootstrap is too
    narrow (with 3 seeds it cannot be wider than the range of the 3 values). Needs 2 repeats.
    """
    _check_confidence(confidence)
    values = _repeats(values)
    n = values.size
    if n < 2:
        raise ValueError(f"an interval of a mean needs at least 2 repeats, got {n}")
    mean = float(values.mean())
    half = float(
        _scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 1) * values.std(ddof=1) / np.sqrt(n)
    )
    return Estimate(mean, mean - half, mean + half, "t", n, confidence)


def bootstrap_interval(
    values,
    *,
    key: jax.Array,
    statistic=np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> Estimate:
    """``statistic(values)`` with a percentile-bootstrap interval over the repeats.

    ``values`` has one row per repeat (seed, subset); rows are resampled with replacement using
    ``key`` and ``statistic`` is applied along axis 0 of each resample (``statistic(sample,
    axis=0)`` must return a scalar for 1-D values), so a statistic of several columns per repeat
    (``values`` of shape ``(n, k)``) keeps the columns of one repeat together.
    """
    _check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D (repeats first), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values contain NaN or inf")
    n = values.shape[0]
    if n < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 repeats, got {n}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"n_resamples must be an integer >= 100, got {n_resamples!r}")
    value = float(np.squeeze(statistic(values, axis=0)))
    resample = np.asarray(jax.random.randint(key, (n_resamples, n), 0, n))
    resampled = np.array([float(np.squeeze(statistic(values[rows], axis=0))) for rows in resample])
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    return Estimate(value, float(low), float(high), "bootstrap", n, confidence)


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> Estimate:
    """Proportion ``k/n`` with the exact Clopper–Pearson interval.

    ``low = B((1−c)/2; k, n−k+1)``, ``high = B((1+c)/2; k+1, n−k)`` with ``B`` the beta
    quantile (``low = 0`` at ``k = 0``, ``high = 1`` at ``k = n``). Exact means the coverage is
    at least ``confidence`` for every true proportion.
    """
    _check_confidence(confidence)
    for name, count in (("successes", successes), ("trials", trials)):
        if isinstance(count, bool) or not isinstance(count, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {count!r}")
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, {trials}], got {successes}")
    alpha = 1.0 - confidence
    k, n = int(successes), int(trials)
    low = 0.0 if k == 0 else float(_scipy_stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(_scipy_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Estimate(k / n, low, high, "clopper-pearson", n, confidence)


def _joint_confidence(estimates) -> float:
    if not estimates:
        raise ValueError("needs at least one estimate")
    confidence = 1.0 - sum(1.0 - e.confidence for e in estimates)
    if confidence <= 0:
        raise ValueError("the combined (Bonferroni) confidence of these estimates is not positive")
    return confidence


def _extreme(estimates, pick, name: str) -> Estimate:
    estimates = list(estimates)
    confidence = _joint_confidence(estimates)
    return Estimate(
        value=pick(e.value for e in estimates),
        low=pick(e.low for e in estimates),
        high=pick(e.high for e in estimates),
        method=f"{name} of " + ", ".join(sorted({e.method for e in estimates})) + " (Bonferroni)",
        n=min(e.n for e in estimates),
        confidence=confidence,
    )


def largest(estimates) -> Estimate:
    """The largest of several quantities, ``max_k θ_k``, with a simultaneous interval.

    The interval is ``[max_k low_k, max_k high_k]``: whenever every interval covers its ``θ_k``,
    this one covers ``max_k θ_k``. By Bonferroni's inequality its confidence is at least
    ``1 − Σ_k (1 − c_k)``, which is what the result states (two 97.5% intervals give a 95%
    one). Use it for "the worse of" several estimates on a scale where larger is worse, or for a
    claim that needs every one of several quantities below a threshold.
    """
    return _extreme(estimates, max, "max")


def smallest(estimates) -> Estimate:
    """The smallest of several quantities, ``min_k θ_k``, with the interval
    ``[min_k low_k, min_k high_k]`` and the Bonferroni confidence of :func:`largest`.

    Use it for a claim that needs every one of several quantities above a threshold.
    """
    return _extreme(estimates, min, "min")


def magnitude(estimate: Estimate) -> Estimate:
    """``|θ|`` with the image of the interval under ``|·|`` (same confidence).

    ``[min(|low|, |high|), max(|low|, |high|)]``, or ``[0, max(|low|, |high|)]`` when the
    interval contains 0.
    """
    low, high = abs(estimate.low), abs(estimate.high)
    bottom = 0.0 if estimate.low <= 0.0 <= estimate.high else min(low, high)
    return Estimate(
        abs(estimate.value),
        bottom,
        max(low, high),
        f"|{estimate.method}|",
        estimate.n,
        estimate.confidence,
    )
