"""Tests for ``ntkbook.stats`` against scipy.stats."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats as scipy_stats

from ntkbook.stats import mean_standard_error, paired_difference, pearson, spearman


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40)
    y = 0.6 * x + 0.8 * rng.standard_normal(40)
    return x, y


def test_pearson_matches_scipy(pair):
    x, y = pair
    ours = pearson(x, y, confidence=0.9)
    reference = scipy_stats.pearsonr(x, y)
    interval = reference.confidence_interval(confidence_level=0.9)  # Fisher z in scipy
    assert ours.coefficient == pytest.approx(reference.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    assert ours.low == pytest.approx(interval.low, rel=1e-10)
    assert ours.high == pytest.approx(interval.high, rel=1e-10)
    assert ours.n == 40 and ours.interval == "fisher"


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, size=30).astype(float)  # many ties
    y = x + rng.integers(0, 4, size=30)
    ours = spearman(x, y)
    reference = scipy_stats.spearmanr(x, y)
    assert ours.coefficient == pytest.approx(reference.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    # Fisher interval with the Fieller-Hartley-Pearson variance 1.06/(n-3).
    z, se = np.arctanh(reference.statistic), np.sqrt(1.06 / 27)
    assert ours.low == pytest.approx(np.tanh(z - 1.959963984540054 * se), rel=1e-10)
    assert ours.high == pytest.approx(np.tanh(z + 1.959963984540054 * se), rel=1e-10)


def test_bootstrap_interval_agrees_with_scipy_bootstrap(pair):
    x, y = pair
    ours = pearson(x, y, interval="bootstrap", key=jax.random.key(0), n_resamples=20000)
    reference = scipy_stats.bootstrap(
        (x, y),
        lambda a, b, axis: scipy_stats.pearsonr(a, b, axis=axis).statistic,
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=20000,
        random_state=np.random.default_rng(0),
    )
    # Two Monte Carlo estimates of the same percentiles: they agree to Monte Carlo error.
    assert ours.low == pytest.approx(reference.confidence_interval.low, abs=0.015)
    assert ours.high == pytest.approx(reference.confidence_interval.high, abs=0.015)
    assert ours.standard_error == pytest.approx(reference.standard_error, rel=0.05)
    assert ours.n_resamples + ours.n_degenerate == 20000


def test_spearman_bootstrap_matches_scipy_bootstrap(pair):
    x, y = pair
    ours = spearman(x, y, interval="bootstrap", key=jax.random.key(1), n_resamples=20000)
    reference = scipy_stats.bootstrap(
        (x, y),
        lambda a, b: scipy_stats.spearmanr(a, b).statistic,
        paired=True,
        method="percentile",
        n_resamples=4000,
        random_state=np.random.default_rng(1),
    )
    assert ours.low == pytest.approx(reference.confidence_interval.low, abs=0.03)
    assert ours.high == pytest.approx(reference.confidence_interval.high, abs=0.03)


def test_bootstrap_is_deterministic_under_a_key(pair):
    x, y = pair
    a = pearson(x, y, interval="bootstrap", key=jax.random.key(3), n_resamples=500)
    b = pearson(x, y, interval="bootstrap", key=jax.random.key(3), n_resamples=500)
    c = pearson(x, y, interval="bootstrap", key=jax.random.key(4), n_resamples=500)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_fisher_interval_covers_the_true_correlation_at_its_level():
    """Coverage of the 90% interval over 2,000 bivariate normal samples of size 30 (ρ = 0.5)."""
    rng = np.random.default_rng(2)
    covariance = [[1.0, 0.5], [0.5, 1.0]]
    hits = 0
    for _ in range(2000):
        x, y = rng.multivariate_normal([0.0, 0.0], covariance, size=30).T
        result = pearson(x, y, confidence=0.9)
        hits += result.low <= 0.5 <= result.high
    assert hits / 2000 == pytest.approx(0.9, abs=0.025)


def test_correlation_rejects_bad_input(pair):
    x, y = pair
    with pytest.raises(ValueError, match="40 values but y has 39"):
        pearson(x, y[:-1])
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="x contains NaN or inf at index 3"):
        spearman(bad, y)
    with pytest.raises(ValueError, match="y is constant"):
        pearson(x, np.ones_like(y))
    with pytest.raises(ValueError, match="at least 4 pairs"):
        pearson(x[:3], y[:3])
    with pytest.raises(ValueError, match="explicit jax.random key"):
        pearson(x, y, interval="bootstrap")
    with pytest.raises(ValueError, match="unknown interval 'jackknife'"):
        pearson(x, y, interval="jackknife")
    with pytest.raises(ValueError, match="confidence"):
        pearson(x, y, confidence=95)


def test_mean_standard_error_matches_scipy():
    values = np.random.default_rng(3).normal(size=(5, 7))
    result = mean_standard_error(values, axis=0)
    np.testing.assert_allclose(result.mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.standard_error, scipy_stats.sem(values, axis=0), rtol=1e-12)
    assert result.n == 5
    scalar = mean_standard_error([1.0, 2.0, 4.0])
    assert scalar.mean == pytest.approx(7 / 3)
    assert scalar.standard_error == pytest.approx(scipy_stats.sem([1.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="at least 2 repeats"):
        mean_standard_error([1.0])
    with pytest.raises(ValueError, match="NaN"):
        mean_standard_error([1.0, np.inf])


def test_paired_difference_matches_a_paired_t_test():
    rng = np.random.default_rng(4)
    b = rng.normal(size=8)
    a = b + 0.3 + 0.1 * rng.normal(size=8)
    result = paired_difference(a, b)
    t = scipy_stats.ttest_rel(a, b).statistic  # t = mean(d) / (s_d/√n)
    assert result.mean / result.standard_error == pytest.approx(t, rel=1e-10)
    with pytest.raises(ValueError, match="equal shapes"):
        paired_difference(a, b[:-1])


def test_a_perfect_correlation_has_no_fisher_interval():
    # Four points in the same order: Spearman is exactly -1, and artanh(-1) is infinite.
    with pytest.raises(ValueError, match="spearman correlation of these 4 pairs is -1"):
        spearman([1.0, 2.0, 3.0, 4.0], [0.9, 0.5, 0.4, 0.1])
    # The bootstrap still gives an interval.
    result = spearman(
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [0.9, 0.5, 0.4, 0.1, 0.0],
        interval="bootstrap",
        key=jax.random.key(0),
    )
    assert result.coefficient == pytest.approx(-1.0)


def test_largest_smallest_and_magnitude_keep_a_valid_interval():
    from ntkbook.stats import Estimate, largest, magnitude, smallest

    a = Estimate(0.2, 0.1, 0.3, "t", 4, 0.975)
    b = Estimate(0.5, -0.4, 1.4, "t", 2, 0.975)
    worst = largest([a, b])
    assert (worst.value, worst.low, worst.high) == (0.5, 0.1, 1.4)
    assert worst.confidence == pytest.approx(0.95) and worst.n == 2
    least = smallest([a, b])
    assert (least.value, least.low, least.high) == (0.2, -0.4, 0.3)
    assert least.confidence == pytest.approx(0.95)
    around_zero = magnitude(Estimate(-0.1, -0.3, 0.2, "t", 3))
    assert (around_zero.value, around_zero.low, around_zero.high) == (0.1, 0.0, 0.3)
    negative = magnitude(Estimate(-0.5, -0.7, -0.2, "t", 3))
    assert (negative.low, negative.high) == pytest.approx((0.2, 0.7))
    with pytest.raises(ValueError, match="at least one"):
        largest([])
    with pytest.raises(ValueError, match="not positive"):
        smallest([Estimate(0, -1, 1, "t", 2, 0.5)] * 2)


def test_smallest_covers_the_minimum_at_its_stated_level():
    # Three true means 0, 0.3 and 0.6, each interval at 1 − 0.05/3, so 95% jointly.
    from ntkbook.stats import mean_interval, smallest

    rng = np.random.default_rng(1)
    covered = 0
    trials = 2000
    for _ in range(trials):
        estimates = [
            mean_interval(rng.normal(mu, 1.0, size=5), confidence=1 - 0.05 / 3)
            for mu in (0.0, 0.3, 0.6)
        ]
        least = smallest(estimates)
        covered += least.low <= 0.0 <= least.high
    assert covered / trials >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / trials)
