"""The claims ledger: the verdict rule, validation in write_summary, the Ledger, the intervals."""

import json

import jax
import numpy as np
import pytest
from scipy import stats as scipy_stats

from ntkbook import stats
from ntkbook.book import SummaryError, write_summary
from ntkbook.book.claims import (
    CLAIM_KEYS,
    PAPER_CLAIMS,
    Ledger,
    check_claims,
    claims_markdown,
    verdict_for,
)
from ntkbook.book.summary import load_summary_file


@pytest.mark.parametrize(
    ("interval", "threshold", "direction", "expected"),
    [
        ((0.1, 0.3), 0.0, "above", "reproduced"),
        ((-0.3, -0.1), 0.0, "above", "not reproduced"),
        ((-0.1, 0.3), 0.0, "above", "inconclusive"),
        ((0.1, 0.3), 0.0, "below", "not reproduced"),
        ((-0.3, -0.1), 0.0, "below", "reproduced"),
        ((-0.1, 0.3), 0.0, "below", "inconclusive"),
        # An interval that touches the threshold cannot rule it out.
        ((0.0, 0.3), 0.0, "above", "inconclusive"),
        ((-0.3, 0.0), 0.0, "above", "inconclusive"),
        ((-0.3, 0.0), 0.0, "below", "inconclusive"),
        ((0.0, 0.3), 0.0, "below", "inconclusive"),
        ((0.5, 0.5), 0.5, "above", "inconclusive"),
        ((0.5000001, 0.6), 0.5, "above", "reproduced"),
        ((0.4, 0.4999999), 0.5, "above", "not reproduced"),
        ((2.0, 2.0), 1.0, "below", "not reproduced"),
    ],
)
def test_verdict_rule_on_hand_made_intervals(interval, threshold, direction, expected):
    assert verdict_for(interval, threshold, direction) == expected


@pytest.mark.parametrize(
    ("interval", "threshold", "direction", "message"),
    [
        ((0.3, 0.1), 0.0, "above", "low > high"),
        ((0.1, float("nan")), 0.0, "above", "finite"),
        ((0.1, 0.2), float("inf"), "above", "finite"),
        ((0.1, 0.2), 0.0, "greater", "'above' or 'below'"),
        ((0.1,), 0.0, "above", "low, high"),
    ],
)
def test_verdict_rule_rejects_bad_input(interval, threshold, direction, message):
    with pytest.raises(ValueError, match=message):
        verdict_for(interval, threshold, direction)


def _claim(**changes):
    claim = {
        "id": "A1",
        "statement": "The entropy correlates with accuracy.",
        "statistic": "Pearson r",
        "value": 0.2,
        "interval": [0.1, 0.3],
        "threshold": 0.0,
        "direction": "above",
        "verdict": "reproduced",
        "reason": "",
    }
    claim.update(changes)
    return claim


def test_write_summary_stores_claims_with_exactly_the_documented_keys(tmp_path):
    path = tmp_path / "summary.json"
    write_summary({"x": 1.0}, path, claims=[_claim()])
    data = json.loads(path.read_text())
    assert [sorted(claim) for claim in data["claims"]] == [sorted(CLAIM_KEYS)]
    assert data["claims"][0]["interval"] == [0.1, 0.3]
    assert load_summary_file(path)["claims"][0]["verdict"] == "reproduced"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"verdict": "reproduced", "interval": [-0.1, 0.3]}, "'A1'.*contradicts.*inconclusive"),
        ({"verdict": "inconclusive"}, "'A1'.*contradicts.*'reproduced'"),
        ({"direction": "below"}, "'A1'.*'not reproduced'"),
        ({"value": float("nan")}, "'A1'.*value is nan"),
        ({"interval": [0.1, float("inf")]}, "'A1'.*interval is inf"),
        ({"threshold": float("nan")}, "'A1'.*threshold is nan"),
        ({"verdict": "confirmed"}, "'A1'.*unknown verdict 'confirmed'"),
        ({"direction": "up"}, "'A1'.*direction"),
        ({"interval": [0.3, 0.1]}, "'A1'.*low > high"),
        ({"verdict": "not tested"}, "'A1'.*'not tested' but has a value"),
        (
            {"verdict": "not tested", "value": None, "interval": None, "reason": ""},
            "'A1'.*gives no reason",
        ),
        ({"value": None}, "'A1'.*lacks a value"),
        ({"statement": ""}, "'A1'.*statement is empty"),
        ({"extra": 1}, "'A1'.*unknown keys \\['extra'\\]"),
    ],
)
def test_write_summary_refuses_an_invalid_claim_naming_its_id(tmp_path, changes, message):
    target = tmp_path / "summary.json"
    with pytest.raises(SummaryError, match=message):
        write_summary({"x": 1.0}, target, claims=[_claim(**changes)])
    assert not target.exists()


def test_a_tampered_summary_file_is_refused_on_reading(tmp_path):
    path = tmp_path / "summary.json"
    write_summary({"x": 1.0}, path, claims=[_claim()])
    data = json.loads(path.read_text())
    data["claims"][0]["verdict"] = "not reproduced"
    path.write_text(json.dumps(data))
    with pytest.raises(SummaryError, match="summary.json: claim 'A1'"):
        load_summary_file(path)


def test_duplicate_claim_ids_are_refused():
    with pytest.raises(SummaryError, match="'A1' appears twice"):
        check_claims([_claim(), _claim()])


def test_ledger_computes_verdicts_and_requires_every_claim():
    ledger = Ledger("data_selection")
    claim = ledger.test("A1", "Pearson r", 0.2, (-0.05, 0.4), threshold=0.0, direction="above")
    assert claim.verdict == "inconclusive"
    assert claim.statement == PAPER_CLAIMS["data_selection"]["A1"]
    ledger.test("A2", "Pearson r", 0.5, np.array([0.3, 0.7]), threshold=0.0, direction="above")
    with pytest.raises(ValueError, match="A3, A4 have no test yet"):
        ledger.claims()
    ledger.test("A3", "accuracy gap", -0.05, (-0.08, -0.02), threshold=0.0, direction="above")
    ledger.not_tested("A4", "entropy gap", reason="needs the book preset: 10 seeds")
    verdicts = [claim.verdict for claim in ledger.claims()]
    assert verdicts == ["inconclusive", "reproduced", "not reproduced", "not tested"]
    table = ledger.table()
    assert table.count("\n") == 5
    assert "| A3 |" in table and "**not reproduced**" in table
    assert ledger._repr_markdown_() == table


def test_ledger_rejects_unknown_and_repeated_ids_and_bad_values():
    ledger = Ledger("data_selection")
    with pytest.raises(ValueError, match="unknown claim id 'Z9'.*A1, A2, A3, A4"):
        ledger.test("Z9", "s", 1.0, (0.0, 2.0), threshold=0.0, direction="above")
    ledger.test("A1", "s", 1.0, (0.0, 2.0), threshold=0.0, direction="above")
    with pytest.raises(ValueError, match="'A1' was already added"):
        ledger.test("A1", "s", 1.0, (0.0, 2.0), threshold=0.0, direction="above")
    with pytest.raises(SummaryError, match="'A2'.*value is nan"):
        ledger.test("A2", "s", float("nan"), (0.0, 2.0), threshold=0.0, direction="above")
    with pytest.raises(ValueError, match="needs a reason"):
        ledger.not_tested("A2", "s", reason=" ")
    with pytest.raises(ValueError, match="no claims are registered for chapter 'nope'"):
        Ledger("nope")


def test_write_summary_takes_a_ledger(tmp_path):
    ledger = Ledger("toy", statements={"T1": "It works."})
    ledger.test("T1", "score", 2.0, (1.5, 2.5), threshold=1.0, direction="above")
    path = tmp_path / "summary.json"
    write_summary({"x": 1}, path, claims=ledger)
    assert json.loads(path.read_text())["claims"][0]["verdict"] == "reproduced"


def test_claims_table_escapes_pipes_and_marks_untested_values():
    table = claims_markdown(
        [
            _claim(statistic="|Δ|"),
            _claim(
                id="A2", verdict="not tested", value=None, interval=None, reason="too few seeds"
            ),
        ]
    )
    assert "\\|Δ\\|" in table
    assert "| A2 |" in table and "| — |" in table


def test_mean_interval_matches_scipy_t_interval():
    values = np.array([0.31, 0.28, 0.35, 0.30, 0.27])
    estimate = stats.mean_interval(values)
    low, high = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values)
    )
    assert estimate.value == pytest.approx(values.mean())
    assert estimate.interval == pytest.approx((low, high), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 repeats"):
        stats.mean_interval([1.0])
    with pytest.raises(ValueError, match="NaN or inf at index 1"):
        stats.mean_interval([1.0, np.nan])


def test_binomial_interval_is_clopper_pearson():
    estimate = stats.binomial_interval(7, 20)
    reference = scipy_stats.binomtest(7, 20).proportion_ci(0.95, method="exact")
    assert estimate.value == pytest.approx(0.35)
    assert estimate.interval == pytest.approx((reference.low, reference.high), rel=1e-9)
    assert stats.binomial_interval(0, 10).low == 0.0
    assert stats.binomial_interval(10, 10).high == 1.0
    with pytest.raises(ValueError, match="successes must lie in \\[0, 5\\], got 6"):
        stats.binomial_interval(6, 5)


def test_bootstrap_interval_covers_the_mean_and_keeps_rows_together():
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 1.0, size=200)
    estimate = stats.bootstrap_interval(values, key=jax.random.key(0))
    standard_error = values.std(ddof=1) / np.sqrt(values.size)
    # The percentile interval of a mean of 200 normals is close to ±1.96 standard errors.
    assert estimate.high - estimate.low == pytest.approx(2 * 1.96 * standard_error, rel=0.15)
    assert estimate.low < values.mean() < estimate.high
    # Two columns per repeat: the statistic sees whole rows (a difference of paired columns).
    pairs = np.stack([values, values - 0.5], axis=1)
    gap = stats.bootstrap_interval(
        pairs, key=jax.random.key(1), statistic=lambda x, axis: np.mean(x[:, 0] - x[:, 1])
    )
    assert gap.low == pytest.approx(0.5) and gap.high == pytest.approx(0.5)
