"""The claims ledger: each paper's findings, the statistic that tests each, and a computed verdict.

A *claim* is one sentence of a paper's finding (its ``statement``, kept here in
:data:`PAPER_CLAIMS` under a stable id such as ``"A1"``). A chapter tests it with one
``statistic`` that it computes, giving its ``value``, a 95% uncertainty ``interval = [low, high]``
(bootstrap over seeds or subsets, a Student-t interval over seeds, a Fisher-z interval for a
correlation or a binomial interval; :mod:`ntkbook.stats` has them), a ``threshold`` and a
``direction``: the paper claims that the statistic lies ``"above"`` (or ``"below"``) the threshold.

The verdict follows one rule, :func:`verdict_for`, and is never typed by hand:

- ``reproduced``: the whole interval lies strictly on the claimed side of the threshold
  (``low > threshold`` for ``"above"``, ``high < threshold`` for ``"below"``);
- ``not reproduced``: the whole interval lies strictly on the other side;
- ``inconclusive``: the closed interval contains the threshold (an interval that only touches
  it is inconclusive too);
- ``not tested``: this run cannot test the claim; ``value`` and ``interval`` are ``None`` and a
  ``reason`` is required (for example "needs the paper preset: 20 seeds").

A chapter builds its claims with a :class:`Ledger`, shows :meth:`Ledger.table` in its final
section "Claims and verdicts", and passes the ledger to
:func:`ntkbook.book.write_summary` (``claims=ledger``). ``summary.json`` then holds a list under
``"claims"`` whose objects have exactly the keys :data:`CLAIM_KEYS`; :func:`check_claims`, which
``write_summary`` and the driver both call, rejects a verdict that does not follow from the other
fields (naming the claim id), a NaN, an unknown direction and a duplicate id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ntkbook.book.errors import SummaryError

__all__ = [
    "CLAIM_KEYS",
    "DIRECTIONS",
    "PAPER_CLAIMS",
    "VERDICTS",
    "Claim",
    "Ledger",
    "check_claims",
    "claims_markdown",
    "verdict_for",
]

Direction = Literal["above", "below"]
DIRECTIONS: tuple[str, ...] = ("above", "below")
REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
#: Every verdict, in the order the status page counts them.
VERDICTS: tuple[str, ...] = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED)
#: The keys of one claim in ``summary.json``, in this order.
CLAIM_KEYS: tuple[str, ...] = (
    "id",
    "statement",
    "statistic",
    "value",
    "interval",
    "threshold",
    "direction",
    "verdict",
    "reason",
)

#: The headline claims of each chapter's paper, by chapter and claim id, in the order the
#: chapter's table lists them. The ids are shared with the issues and the status page.
PAPER_CLAIMS: dict[str, dict[str, str]] = {
    "ntk_methods": {
        "M1": "The matrix-free (stochastic Lanczos) entropy lies within 2% of the exact entropy.",
        "M2": "The exact kernel methods (structured, Jacobian, NTK-vector products) agree.",
    },
    "data_selection": {
        "A1": "The initial eNTK entropy of a training set correlates with the test accuracy "
        "reached after training on it.",
        "A2": "The initial eNTK trace of a training set correlates with the test accuracy "
        "reached after training on it.",
        "A3": "Training sets selected by random network distillation (RND) outperform random ones.",
        "A4": "RND-selected sets have a larger eNTK entropy and trace than random ones.",
    },
    "collective_variables": {
        "B1": "Small networks compress: their eNTK entropy falls during training.",
        "B2": "Large networks form structure: their eNTK entropy rises as training proceeds.",
        "B3": "The same two regimes appear in transformer, auto-encoder, GNN and RL models.",
    },
    "scaling": {
        "C1": "Data scaling and model scaling have similar loss exponents.",
        "C2": "The internal (eNTK) dynamics of data and model scaling are opposite.",
        "C3": "Feature learning is lost as the width grows.",
        "C4": "A maximum width that supports feature learning exists.",
    },
    "spectral_reach": {
        "D1": "The spectral position χ_pos falls during training.",
        "D2": "Larger models reach a lower χ_pos.",
        "D3": "Feature learning sustains reach by amplifying gradient magnitudes.",
    },
    "swarmrl": {
        "S1": "Classical and reinforcement-learning controllers solve the task under one "
        "interface.",
        "S2": "A trained policy deploys unchanged in another simulation setting.",
    },
    "chemotaxis": {
        "E1": "Agents learn chemotaxis as soon as it is physically possible.",
        "E2": "Agents sometimes learn chemotaxis before active swimming overpowers Brownian "
        "motion.",
        "E3": "Chemotactic efficiency converges in swimmer size and speed.",
        "E4": "Three dominant strategies emerge, plus rare ones.",
    },
    "temperature_strategy": {
        "G1": "At higher temperatures the agents find new strategies for chemotaxis.",
        "G2": "At higher temperatures the agents find new strategies for rotating a rod.",
    },
    "peptide_scaleograms": {
        "F1": "The 42 peptides are classified far above chance.",
        "F2": "Scaleogram models beat a feature baseline.",
        "F3": "Transfer learning recovers accuracy on new hardware.",
    },
}


def _finite(value: Any, what: str, claim_id: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # NumPy and JAX scalars
        except (TypeError, ValueError):
            raise SummaryError(
                f"claim {claim_id!r}: {what} is {value!r}, which is not a number"
            ) from None
    value = float(value)
    if not math.isfinite(value):
        raise SummaryError(f"claim {claim_id!r}: {what} is {value}; it must be finite")
    return value


def verdict_for(interval: Sequence[float], threshold: float, direction: str) -> str:
    """The verdict of an interval ``[low, high]`` against ``threshold`` in ``direction``.

    ``direction="above"``: ``reproduced`` if ``low > threshold``, ``not reproduced`` if
    ``high < threshold``, else ``inconclusive``; ``"below"`` mirrors this. An interval whose end
    touches the threshold is inconclusive: the data cannot rule the threshold out.

    Raises:
        ValueError: an unknown direction, an interval that is not two finite numbers with
            ``low <= high``, or a non-finite threshold.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    if len(interval) != 2:
        raise ValueError(f"interval must be [low, high], got {list(interval)!r}")
    low, high = (float(x) for x in interval)
    threshold = float(threshold)
    if not all(math.isfinite(x) for x in (low, high, threshold)):
        raise ValueError(f"interval [{low}, {high}] and threshold {threshold} must be finite")
    if low > high:
        raise ValueError(f"interval [{low}, {high}] has low > high")
    claimed_side = low > threshold if direction == "above" else high < threshold
    other_side = high < threshold if direction == "above" else low > threshold
    if claimed_side:
        return REPRODUCED
    if other_side:
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclass(frozen=True)
class Claim:
    """One claim and its test; build it with :meth:`Ledger.test` or :meth:`Ledger.not_tested`.

    For a tested claim ``value``, ``interval``, ``threshold`` and ``direction`` are set and
    ``verdict`` is :func:`verdict_for` of them; ``reason`` may say how the interval was
    computed. For an untested one ``value`` and ``interval`` are ``None`` and ``reason`` says why.
    """

    id: str
    statement: str
    statistic: str
    value: float | None
    interval: tuple[float, float] | None
    threshold: float | None
    direction: str | None
    verdict: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The claim as the plain JSON object stored in ``summary.json``."""
        return {
            "id": self.id,
            "statement": self.statement,
            "statistic": self.statistic,
            "value": self.value,
            "interval": None if self.interval is None else list(self.interval),
            "threshold": self.threshold,
            "direction": self.direction,
            "verdict": self.verdict,
            "reason": self.reason,
        }


def _text(entry: Mapping[str, Any], key: str, claim_id: str, required: bool) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise SummaryError(f"claim {claim_id!r}: {key} must be a string, got {value!r}")
    if required and not value.strip():
        raise SummaryError(f"claim {claim_id!r}: {key} is empty")
    return value


def check_claim(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one claim object and return it as plain JSON data (keys in :data:`CLAIM_KEYS`).

    Raises:
        SummaryError: a missing or unknown key, a NaN, an unknown direction, or a verdict that
            does not follow from the interval, threshold and direction; the message names the
            claim id.
    """
    if isinstance(entry, Claim):
        entry = entry.as_dict()
    if not isinstance(entry, Mapping):
        raise SummaryError(f"a claim must be a Claim or a dict, got {type(entry).__name__}")
    claim_id = entry.get("id")
    if not isinstance(claim_id, str) or not claim_id.strip():
        raise SummaryError(f"a claim needs a non-empty string id, got {claim_id!r}")
    missing = [key for key in CLAIM_KEYS if key not in entry]
    unknown = sorted(set(entry) - set(CLAIM_KEYS))
    if missing or unknown:
        raise SummaryError(
            f"claim {claim_id!r}: missing keys {missing} and unknown keys {unknown}; a claim has "
            f"exactly the keys {list(CLAIM_KEYS)}"
        )
    statement = _text(entry, "statement", claim_id, required=True)
    statistic = _text(entry, "statistic", claim_id, required=True)
    reason = _text(entry, "reason", claim_id, required=False)
    verdict = entry["verdict"]
    if verdict not in VERDICTS:
        raise SummaryError(
            f"claim {claim_id!r}: unknown verdict {verdict!r}; verdicts are {list(VERDICTS)}"
        )
    direction = entry["direction"]
    if direction is not None and direction not in DIRECTIONS:
        raise SummaryError(
            f"claim {claim_id!r}: direction must be 'above' or 'below', got {direction!r}"
        )
    threshold = entry["threshold"]
    threshold = None if threshold is None else _finite(threshold, "threshold", claim_id)
    value, interval = entry["value"], entry["interval"]
    if verdict == NOT_TESTED:
        if value is not None or interval is not None:
            raise SummaryError(
                f"claim {claim_id!r} is 'not tested' but has a value or interval; a claim with a "
                "statistic and interval is tested, and its verdict follows from them"
            )
        if not reason.strip():
            raise SummaryError(f"claim {claim_id!r} is 'not tested' but gives no reason")
    else:
        if value is None or interval is None or threshold is None or direction is None:
            raise SummaryError(
                f"claim {claim_id!r} has verdict {verdict!r} but lacks a value, interval, "
                "threshold or direction; an untested claim has the verdict 'not tested'"
            )
        value = _finite(value, "value", claim_id)
        if not isinstance(interval, Sequence) or isinstance(interval, str) or len(interval) != 2:
            raise SummaryError(
                f"claim {claim_id!r}: interval must be [low, high], got {interval!r}"
            )
        interval = [_finite(x, "interval", claim_id) for x in interval]
        if interval[0] > interval[1]:
            raise SummaryError(f"claim {claim_id!r}: interval {interval} has low > high")
        expected = verdict_for(interval, threshold, direction)
        if verdict != expected:
            raise SummaryError(
                f"claim {claim_id!r}: verdict {verdict!r} contradicts its interval "
                f"[{interval[0]:.4g}, {interval[1]:.4g}] against the threshold {threshold:.4g} "
                f"({direction}); the rule gives {expected!r}"
            )
    return {
        "id": claim_id,
        "statement": statement,
        "statistic": statistic,
        "value": value,
        "interval": interval,
        "threshold": threshold,
        "direction": direction,
        "verdict": verdict,
        "reason": reason,
    }


def check_claims(claims: Iterable[Any]) -> list[dict[str, Any]]:
    """Validate a list of claims (:class:`Claim` objects or dicts; see :func:`check_claim`).

    Raises:
        SummaryError: any claim is invalid, or two claims share an id.
    """
    if isinstance(claims, Ledger):
        claims = claims.claims()
    if isinstance(claims, str | bytes | Mapping) or not isinstance(claims, Iterable):
        raise SummaryError(f"claims must be a list of claims, got {type(claims).__name__}")
    checked = [check_claim(entry) for entry in claims]
    seen: set[str] = set()
    for entry in checked:
        if entry["id"] in seen:
            raise SummaryError(f"claim id {entry['id']!r} appears twice")
        seen.add(entry["id"])
    return checked


def format_number(value: float) -> str:
    """Four significant digits, without an exponent for ordinary magnitudes."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3g}"


def format_estimate(entry: Mapping[str, Any]) -> str:
    """``value [low, high]`` of a claim object, or an em dash when it was not tested."""
    if entry["value"] is None:
        return "—"
    low, high = entry["interval"]
    return f"{format_number(entry['value'])} [{format_number(low)}, {format_number(high)}]"


def format_test(entry: Mapping[str, Any]) -> str:
    """``> 0`` or ``< 0.5``: what the paper claims of the statistic."""
    if entry["threshold"] is None or entry["direction"] is None:
        return "—"
    sign = ">" if entry["direction"] == "above" else "<"
    return f"{sign} {format_number(entry['threshold'])}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def claims_markdown(claims: Iterable[Any]) -> str:
    """The "Claims and verdicts" table (Markdown) of a list of claims."""
    rows = [
        "| id | verdict | value [95% interval] | claimed | claim | statistic | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in check_claims(claims):
        rows.append(
            f"| {entry['id']} | **{entry['verdict']}** | {format_estimate(entry)} "
            f"| {format_test(entry)} | {_cell(entry['statement'])} | {_cell(entry['statistic'])} "
            f"| {_cell(entry['reason'])} |"
        )
    return "\n".join(rows)


class Ledger:
    """The claims of one chapter: add each claim's test, show the table, pass it to the summary.

    ::

        ledger = Ledger("data_selection")
        r = stats.pearson(entropy, accuracy, interval="bootstrap", key=key)
        ledger.test("A1", "Pearson r(initial entropy, test accuracy)", r.coefficient,
                    (r.low, r.high), threshold=0.0, direction="above")
        ledger.not_tested("A2", "Pearson r(initial trace, test accuracy)",
                          reason="needs the book preset: 40 subsets")
        display(ledger)                      # the table
        write_summary({...}, claims=ledger)

    The statements come from :data:`PAPER_CLAIMS` (or ``statements`` for a chapter not listed
    there). :meth:`claims` refuses to return until every claim of the chapter has been added,
    so a chapter cannot forget one.
    """

    def __init__(self, chapter: str, statements: Mapping[str, str] | None = None) -> None:
        if statements is None:
            if chapter not in PAPER_CLAIMS:
                raise ValueError(
                    f"no claims are registered for chapter {chapter!r}; registered chapters: "
                    f"{', '.join(PAPER_CLAIMS)} (or pass statements={{id: sentence}})"
                )
            statements = PAPER_CLAIMS[chapter]
        if not statements:
            raise ValueError(f"chapter {chapter!r} needs at least one claim")
        self.chapter = chapter
        self.statements = dict(statements)
        self._claims: dict[str, Claim] = {}

    def _statement(self, claim_id: str) -> str:
        if claim_id not in self.statements:
            raise ValueError(
                f"unknown claim id {claim_id!r} for chapter {self.chapter!r}; its claims are "
                f"{', '.join(self.statements)}"
            )
        if claim_id in self._claims:
            raise ValueError(f"claim {claim_id!r} was already added to the ledger")
        return self.statements[claim_id]

    def test(
        self,
        claim_id: str,
        statistic: str,
        value: float,
        interval: Sequence[float],
        threshold: float,
        direction: Direction,
        reason: str = "",
    ) -> Claim:
        """Add a tested claim; its verdict is :func:`verdict_for` ``(interval, threshold,
        direction)``. ``reason`` may say how the interval was computed or what limits it."""
        statement = self._statement(claim_id)
        value = _finite(value, "value", claim_id)
        if isinstance(interval, str) or len(interval) != 2:
            raise ValueError(f"claim {claim_id!r}: interval must be (low, high), got {interval!r}")
        low, high = (_finite(x, "interval", claim_id) for x in interval)
        threshold = _finite(threshold, "threshold", claim_id)
        verdict = verdict_for((low, high), threshold, direction)
        claim = Claim(
            claim_id,
            statement,
            statistic,
            value,
            (low, high),
            threshold,
            direction,
            verdict,
            reason,
        )
        self._claims[claim_id] = claim
        return claim

    def not_tested(
        self,
        claim_id: str,
        statistic: str,
        reason: str,
        threshold: float | None = None,
        direction: Direction | None = None,
    ) -> Claim:
        """Add a claim that this run cannot test; ``reason`` (required) says why and what would
        test it. ``threshold`` and ``direction`` may name the test that a larger run applies."""
        statement = self._statement(claim_id)
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"claim {claim_id!r}: a claim that is not tested needs a reason")
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
        if threshold is not None:
            threshold = _finite(threshold, "threshold", claim_id)
        claim = Claim(
            claim_id, statement, statistic, None, None, threshold, direction, NOT_TESTED, reason
        )
        self._claims[claim_id] = claim
        return claim

    def claims(self) -> list[Claim]:
        """Every claim of the chapter, in the order of its statements.

        Raises:
            ValueError: a claim of the chapter has not been added yet.
        """
        missing = [claim_id for claim_id in self.statements if claim_id not in self._claims]
        if missing:
            raise ValueError(
                f"chapter {self.chapter!r}: claims {', '.join(missing)} have no test yet; add "
                "each with Ledger.test(...) or Ledger.not_tested(..., reason=...)"
            )
        return [self._claims[claim_id] for claim_id in self.statements]

    def table(self) -> str:
        """The "Claims and verdicts" Markdown table."""
        return claims_markdown(self.claims())

    def _repr_markdown_(self) -> str:
        return self.table()
