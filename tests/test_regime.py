"""``regime`` on synthetic entropy curves, against the rule in its docstring."""

import numpy as np
import pytest

from ntkbook.ntk import MIXED, agreed_regime, regime

EPOCHS = np.unique(np.round(np.geomspace(1, 501, 30)).astype(int) - 1)  # 0 … 500, log-spaced


def test_monotone_fall_is_compression():
    entropy = 3.0 - 0.1 * np.log1p(EPOCHS)
    result = regime(EPOCHS, entropy)
    assert result.label == "compression"
    assert result.slope < 0
    assert result.change_from_initial == pytest.approx(entropy[-1] - entropy[0])
    assert result.change_from_minimum == pytest.approx(0.0)


def test_dip_then_steady_rise_is_structure_formation():
    # The shape measured for wide networks: a sharp fall in the first epochs, then a rise that
    # has not made the fall up, so the first-to-last change is negative.
    entropy = 2.67 - 1.0 * (1 - np.exp(-EPOCHS / 1.0)) + 0.06 * np.log1p(EPOCHS)
    result = regime(EPOCHS, entropy)
    assert result.change_from_initial < 0
    assert result.change_from_minimum > 0.2
    assert result.label == "structure_formation"
    assert result.slope == pytest.approx(0.06, rel=0.05)


def test_flat_noisy_curve_is_undetermined():
    noise = np.random.default_rng(0).normal(scale=0.02, size=EPOCHS.size)
    result = regime(EPOCHS, 2.0 + noise)
    assert result.label == "undetermined"
    assert abs(result.slope) < 2 * result.standard_error + 0.01


def test_rise_then_fall_is_compression():
    entropy = 2.0 + 0.3 * np.log1p(EPOCHS) * np.exp(-EPOCHS / 60.0)
    result = regime(EPOCHS, entropy)
    assert result.change_from_initial > 0  # above where it started ...
    assert result.label == "compression"  # ... but falling over the last decade


def test_slope_and_error_match_a_least_squares_fit():
    rng = np.random.default_rng(1)
    entropy = 2.0 + 0.05 * np.log1p(EPOCHS) + rng.normal(scale=0.01, size=EPOCHS.size)
    result = regime(EPOCHS, entropy)
    inside = EPOCHS >= 50
    x = np.log(EPOCHS[inside])
    (slope, _), covariance = np.polyfit(x, entropy[inside], 1, cov="unscaled")
    residuals = entropy[inside] - np.polyval([slope, _], x)
    error = np.sqrt(covariance[0, 0] * np.sum(residuals**2) / (inside.sum() - 2))
    assert result.window == (int(EPOCHS[inside][0]), 500)
    assert result.n_records == inside.sum()
    assert result.slope == pytest.approx(slope, rel=1e-10)
    assert result.standard_error == pytest.approx(error, rel=1e-8)


def test_threshold_on_slope_magnitude():
    # A resolved but negligible trend (below min_slope) is undetermined; lowering it decides.
    entropy = 2.0 + 0.005 * np.log1p(EPOCHS)
    assert regime(EPOCHS, entropy).label == "undetermined"
    assert regime(EPOCHS, entropy, min_slope=0.001).label == "structure_formation"


def test_too_few_records_in_the_last_decade_is_undetermined():
    result = regime([0, 1, 100], [2.0, 1.5, 1.9])
    assert result.label == "undetermined" and result.slope is None and result.n_records == 1


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="strictly increasing"):
        regime([0, 2, 2], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one length"):
        regime([0, 1, 2], [1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        regime([0, 1, 2], [1.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="non-negative integers"):
        regime([0.0, 1.5, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="min_slope must be positive"):
        regime([0, 1, 2], [1.0, 1.0, 1.0], min_slope=0)


def test_agreed_regime_needs_every_seed_to_agree():
    assert agreed_regime(["compression", "compression"]) == "compression"
    assert agreed_regime(["compression", "structure_formation"]) == MIXED
    assert agreed_regime(["undetermined", "compression"]) == MIXED
    with pytest.raises(ValueError, match="unknown regimes"):
        agreed_regime(["compress"])
    with pytest.raises(ValueError, match="at least one"):
        agreed_regime([])


def test_seed_regimes_agree_or_are_mixed_with_intervals_over_seeds():
    from scipy import stats as scipy_stats

    from ntkbook.ntk import seed_regimes

    rises = [(EPOCHS, 2.0 + b * np.log1p(EPOCHS)) for b in (0.05, 0.07, 0.06)]
    group = seed_regimes(rises)
    assert group.label == "structure_formation"
    slopes = [run.slope for run in group.runs]
    half = scipy_stats.t.ppf(0.975, 2) * np.std(slopes, ddof=1) / np.sqrt(3)
    assert group.slope.value == pytest.approx(np.mean(slopes))
    assert group.slope.interval == pytest.approx((np.mean(slopes) - half, np.mean(slopes) + half))
    assert group.change_from_initial.n == 3
    mixed = seed_regimes([rises[0], (EPOCHS, 3.0 - 0.1 * np.log1p(EPOCHS))])
    assert mixed.label == MIXED
    single = seed_regimes(rises[:1])
    assert single.label == "structure_formation" and single.slope is None
    assert set(group.as_dict()) == {
        "label",
        "runs",
        "slope",
        "change_from_initial",
        "change_from_minimum",
    }
