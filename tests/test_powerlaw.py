"""Power-law fits against scipy.optimize.curve_fit and against synthetic data of known exponent."""

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import curve_fit

from ntkbook.powerlaw import compare_exponents, fit_power_law, frontier, threshold_crossing

X = np.logspace(1, 4, 12)


def _decaying(x, a, alpha, c):
    return a * x ** (-alpha) + c


def _noisy_power_law(seed, *, a=3.0, alpha=0.7, relative_noise=0.05):
    rng = np.random.default_rng(seed)
    return a * X ** (-alpha) * np.exp(relative_noise * rng.standard_normal(X.size))


def _noisy_with_offset(seed, *, a=2.0, alpha=0.5, c=0.3, noise=0.003):
    rng = np.random.default_rng(seed)
    return _decaying(X, a, alpha, c) + noise * rng.standard_normal(X.size)


def test_recovers_exponent_without_offset_within_its_uncertainty():
    fit = fit_power_law(X, _noisy_power_law(0))
    assert abs(fit.exponent - 0.7) < 3 * fit.exponent_err
    assert abs(fit.exponent - 0.7) < 0.03
    assert abs(fit.prefactor - 3.0) < 3 * fit.prefactor_err
    assert fit.offset == 0.0 and fit.offset_err == 0.0
    assert 0.0 < fit.exponent_err < 0.03


def test_recovers_exponent_with_offset_within_its_uncertainty():
    fit = fit_power_law(X, _noisy_with_offset(1), offset=True)
    for value, truth, error in (
        (fit.exponent, 0.5, fit.exponent_err),
        (fit.prefactor, 2.0, fit.prefactor_err),
        (fit.offset, 0.3, fit.offset_err),
    ):
        assert abs(value - truth) < 3 * error
    assert abs(fit.exponent - 0.5) < 0.05
    assert abs(fit.offset - 0.3) < 0.02


def test_log_space_fit_matches_curve_fit():
    y = _noisy_power_law(2)
    fit = fit_power_law(X, y)
    popt, pcov = curve_fit(lambda lx, b, alpha: b - alpha * lx, np.log(X), np.log(y))
    assert fit.exponent == pytest.approx(popt[1], rel=1e-6)
    assert fit.prefactor == pytest.approx(np.exp(popt[0]), rel=1e-6)
    assert fit.exponent_err == pytest.approx(np.sqrt(pcov[1, 1]), rel=1e-5)
    assert fit.prefactor_err == pytest.approx(np.exp(popt[0]) * np.sqrt(pcov[0, 0]), rel=1e-5)


def test_weighted_log_space_fit_matches_curve_fit_with_absolute_sigma():
    y = _noisy_power_law(3)
    y_err = 0.05 * y * np.linspace(0.5, 2.0, X.size)
    fit = fit_power_law(X, y, y_err=y_err)
    popt, pcov = curve_fit(
        lambda lx, b, alpha: b - alpha * lx,
        np.log(X),
        np.log(y),
        sigma=y_err / y,
        absolute_sigma=True,
    )
    assert fit.exponent == pytest.approx(popt[1], rel=1e-6)
    assert fit.exponent_err == pytest.approx(np.sqrt(pcov[1, 1]), rel=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_offset_fit_matches_curve_fit(weighted):
    y = _noisy_with_offset(4)
    y_err = np.full_like(y, 0.003) if weighted else None
    fit = fit_power_law(X, y, offset=True, y_err=y_err)
    popt, pcov = curve_fit(
        _decaying, X, y, p0=(1.0, 0.3, 0.0), sigma=y_err, absolute_sigma=weighted, maxfev=20000
    )
    np.testing.assert_allclose([fit.prefactor, fit.exponent, fit.offset], popt, rtol=1e-4)
    np.testing.assert_allclose(
        [fit.prefactor_err, fit.exponent_err, fit.offset_err], np.sqrt(np.diag(pcov)), rtol=1e-3
    )


@pytest.mark.parametrize("offset", [False, True])
def test_stated_uncertainty_is_calibrated(offset):
    """Over many noisy data sets the truth lies within one standard error about 68% of the time."""
    hits = []
    for seed in range(150):
        y = _noisy_with_offset(seed) if offset else _noisy_power_law(seed)
        truth = 0.5 if offset else 0.7
        fit = fit_power_law(X, y, offset=offset)
        hits.append(abs(fit.exponent - truth) < fit.exponent_err)
    assert 0.58 < np.mean(hits) < 0.78


@pytest.mark.parametrize("offset", [False, True])
def test_bootstrap_errors_agree_with_covariance_and_follow_the_key(offset):
    y = _noisy_with_offset(5) if offset else _noisy_power_law(5)
    covariance = fit_power_law(X, y, offset=offset)
    boot = fit_power_law(X, y, offset=offset, key=jax.random.key(0), n_bootstrap=400)
    again = fit_power_law(X, y, offset=offset, key=jax.random.key(0), n_bootstrap=400)
    other = fit_power_law(X, y, offset=offset, key=jax.random.key(1), n_bootstrap=400)
    assert boot.exponent == covariance.exponent
    assert 0.5 < boot.exponent_err / covariance.exponent_err < 1.5
    assert boot.exponent_err == again.exponent_err
    assert boot.exponent_err != other.exponent_err
    assert "bootstrap" in boot.method


def test_predict_evaluates_the_law():
    fit = fit_power_law(X, _noisy_with_offset(6), offset=True)
    np.testing.assert_allclose(
        fit.predict([10.0, 100.0]),
        fit.prefactor * np.array([10.0, 100.0]) ** (-fit.exponent) + fit.offset,
    )
    with pytest.raises(ValueError, match="x > 0"):
        fit.predict([0.0])


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        ([1.0, -2.0, 3.0], [1.0, 0.5, 0.3], {}, "x must be positive"),
        ([1.0, 2.0, 3.0], [1.0, 0.0, 0.3], {}, "y must be positive"),
        ([1.0, 2.0, 3.0], [1.0, np.nan, 0.3], {}, "NaN"),
        ([1.0, np.inf, 3.0], [1.0, 0.5, 0.3], {}, "NaN"),
        ([1.0], [1.0], {}, "cannot determine 2 parameters"),
        ([1.0, 2.0], [1.0, 0.5], {"offset": True}, "cannot determine 3 parameters"),
        ([1.0, 2.0], [1.0, 0.5], {}, "no residual"),
        ([1.0, 1.0, 1.0], [1.0, 0.5, 0.3], {}, "distinct"),
        ([1.0, 2.0, 3.0], [1.0, 0.5], {}, "equal length"),
        ([1.0, 2.0, 3.0], [1.0, 0.5, 0.3], {"y_err": [0.1, 0.0, 0.1]}, "y_err"),
        ([1.0, 2.0, 3.0], [1.0, 0.5, 0.3], {"key": jax.random.key(0), "n_bootstrap": 1}, "n_boot"),
    ],
)
def test_bad_input_raises_clear_errors(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y, **kwargs)


def test_offset_fit_accepts_non_positive_y():
    y = _noisy_with_offset(7, c=-0.2)
    fit = fit_power_law(X, y, offset=True)
    assert abs(fit.offset + 0.2) < 3 * fit.offset_err


def test_threshold_crossing_solves_the_law_and_its_error_matches_the_spread():
    exact = fit_power_law(X, 3.0 * X ** (-0.7) * np.exp(1e-9 * np.sin(X)))
    crossing = threshold_crossing(exact, 0.01, x_range=(X.min(), X.max()))
    assert crossing.value == pytest.approx((3.0 / 0.01) ** (1 / 0.7), rel=1e-6)
    assert not crossing.extrapolated
    assert threshold_crossing(exact, 1e-4, x_range=(X.min(), X.max())).extrapolated

    log_values, log_errors = [], []
    for seed in range(300):
        result = threshold_crossing(fit_power_law(X, _noisy_power_law(seed)), 0.01)
        log_values.append(np.log(result.value))
        log_errors.append(result.log_err)
        assert result.low < result.value < result.high
    # The delta-method error predicts the seed-to-seed spread of ln x*.
    assert np.std(log_values) / np.mean(log_errors) == pytest.approx(1.0, abs=0.15)


def test_threshold_crossing_rejects_offsets_and_growing_laws():
    with pytest.raises(ValueError, match="without offset"):
        threshold_crossing(fit_power_law(X, _noisy_with_offset(0), offset=True), 0.5)
    with pytest.raises(ValueError, match="does not decay"):
        threshold_crossing(fit_power_law(X, X**0.5), 0.5)
    with pytest.raises(ValueError, match="threshold"):
        threshold_crossing(fit_power_law(X, _noisy_power_law(0)), -1.0)


def test_exponent_interval_is_the_student_t_interval_of_the_log_space_regression():
    x = X[:5]
    y = 3.0 * x ** (-0.7) * np.exp(0.05 * np.random.default_rng(8).standard_normal(5))
    fit = fit_power_law(x, y)
    regression = stats.linregress(np.log(x), np.log(y))
    half = stats.t.ppf(0.975, 3) * regression.stderr
    assert fit.error_dof == 3
    np.testing.assert_allclose(
        fit.exponent_interval(), (-regression.slope - half, -regression.slope + half), rtol=1e-6
    )
    # Errors given as absolute sigmas, or from the bootstrap, count as known: normal quantile.
    assert fit_power_law(x, y, y_err=0.05 * y).error_dof == np.inf
    assert fit_power_law(x, y, key=jax.random.key(0), n_bootstrap=50).error_dof == np.inf
    assert fit_power_law(X, _noisy_with_offset(0), offset=True).error_dof == X.size - 3


def test_threshold_crossing_interval_widens_the_one_sigma_interval_by_the_t_quantile():
    fit = fit_power_law(X[:6], _noisy_power_law(9)[:6])
    crossing = threshold_crossing(fit, 0.01)
    low, high = crossing.interval(0.95)
    q = stats.t.ppf(0.975, 4)
    assert crossing.error_dof == 4
    assert low == pytest.approx(crossing.value * np.exp(-q * crossing.log_err), rel=1e-12)
    assert high == pytest.approx(crossing.value * np.exp(q * crossing.log_err), rel=1e-12)
    assert low < crossing.low < crossing.value < crossing.high < high


def test_compare_exponents_follows_its_formulas():
    a = fit_power_law(X[:6], _noisy_power_law(10)[:6])
    b = fit_power_law(X, _noisy_power_law(11, alpha=0.4))
    comparison = compare_exponents(a, b)
    sa, sb = a.exponent_err, b.exponent_err
    welch = (sa**2 + sb**2) ** 2 / (sa**4 / 4 + sb**4 / 10)
    half = stats.t.ppf(0.975, welch) * np.hypot(sa, sb)
    assert comparison.dof == pytest.approx(welch)
    assert comparison.difference == pytest.approx(a.exponent - b.exponent)
    assert comparison.difference_low == pytest.approx(comparison.difference - half)
    mean = (a.exponent + b.exponent) / 2
    assert comparison.relative == pytest.approx((a.exponent - b.exponent) / mean)
    # The delta-method error of the relative difference against a finite difference.
    eps = 1e-7
    d_a = (
        ((a.exponent + eps) - b.exponent) / ((a.exponent + eps + b.exponent) / 2)
        - comparison.relative
    ) / eps
    d_b = (
        (a.exponent - (b.exponent + eps)) / ((a.exponent + b.exponent + eps) / 2)
        - comparison.relative
    ) / eps
    assert comparison.relative_err == pytest.approx(np.hypot(d_a * sa, d_b * sb), rel=1e-5)
    assert comparison.relative_low < comparison.relative < comparison.relative_high
    assert comparison.z_score == pytest.approx(abs(a.exponent - b.exponent) / np.hypot(sa, sb))


def test_compare_exponents_interval_covers_equal_exponents_at_its_confidence():
    """Two laws with the same exponent: the 95% interval of the difference contains 0 in about
    95% of noisy data sets, even with only 5 points per fit (t, not normal, quantiles)."""
    x = X[::3][:5]
    rng = np.random.default_rng(12)
    hits = []
    for _ in range(400):
        fits = [
            fit_power_law(x, 2.0 * x ** (-0.5) * np.exp(0.05 * rng.standard_normal(x.size)))
            for _ in range(2)
        ]
        comparison = compare_exponents(*fits)
        hits.append(comparison.difference_low <= 0.0 <= comparison.difference_high)
    assert 0.92 < np.mean(hits) < 0.985


def test_relative_magnitude_folds_the_interval_and_refuses_non_decaying_means():
    a = fit_power_law(X, _noisy_power_law(13, alpha=0.7, relative_noise=0.01))
    b = fit_power_law(X, _noisy_power_law(14, alpha=0.35, relative_noise=0.01))
    value, (low, high) = compare_exponents(b, a).relative_magnitude()
    comparison = compare_exponents(b, a)
    assert comparison.relative_high < 0  # b decays more slowly: a clearly negative difference
    assert value == pytest.approx(-comparison.relative)
    assert (low, high) == pytest.approx((-comparison.relative_high, -comparison.relative_low))
    same = compare_exponents(a, fit_power_law(X, _noisy_power_law(15)))
    value, (low, high) = same.relative_magnitude()
    assert low == 0.0 and high == pytest.approx(
        max(abs(same.relative_low), abs(same.relative_high))
    )
    growing = fit_power_law(X, X**0.9)
    assert np.isnan(compare_exponents(a, growing).relative)
    with pytest.raises(ValueError, match="not positive"):
        compare_exponents(a, growing).relative_magnitude()


def test_frontier_keeps_the_points_no_cheaper_point_beats():
    compute = [4.0, 1.0, 2.0, 2.0, 3.0, 8.0, 5.0]
    loss = [0.5, 1.0, 0.9, 0.7, 0.8, 0.6, 0.4]
    front_compute, front_loss = frontier(compute, loss)
    # Brute force: a point is on the frontier when every point of lower or equal compute
    # (other than itself) has a higher loss.
    expected = sorted(
        (c, l)
        for i, (c, l) in enumerate(zip(compute, loss, strict=True))
        if all(loss[j] > l for j in range(len(compute)) if j != i and compute[j] <= c)
    )
    np.testing.assert_array_equal(front_compute, [c for c, _ in expected])
    np.testing.assert_array_equal(front_loss, [l for _, l in expected])
    assert np.all(np.diff(front_loss) < 0)


def test_frontier_refuses_mismatched_empty_or_nan_input():
    with pytest.raises(ValueError, match="equal length"):
        frontier([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="none"):
        frontier([], [])
    with pytest.raises(ValueError, match="nan"):
        frontier([1.0, 2.0], [1.0, np.nan])
