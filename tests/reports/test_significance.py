"""The one verdict rule ("better" / "alike" / "cannot tell") at its boundaries, and its trial estimate."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from reports.intervals import Interval, mean_interval
from reports.significance import Outcome, decide, needed_n


def interval(estimate: float, low: float | None, high: float | None, n: int = 3) -> Interval:
    return Interval(estimate, low, high, n, "t")


@pytest.mark.parametrize(
    ("estimate", "low", "high", "expected"),
    [
        (0.20, 0.05, 0.35, Outcome.ABOVE),  # excludes 0, estimate past the margin
        (-0.20, -0.35, -0.05, Outcome.BELOW),
        (0.08, 0.01, 0.15, Outcome.UNDECIDED),  # excludes 0 but may or may not matter
        (0.02, -0.05, 0.09, Outcome.ALIKE),  # wholly inside ±0.1
        (0.0, -0.1, 0.1, Outcome.ALIKE),  # touching the margin on both sides still counts as inside
        (0.05, -0.05, 0.11, Outcome.UNDECIDED),  # crosses 0 and the margin
        (0.12, 0.0, 0.24, Outcome.UNDECIDED),  # low exactly 0 does not exclude 0
        (0.10, 0.05, 0.15, Outcome.UNDECIDED),  # estimate exactly on the margin is not past it
        (0.0, 0.0, 0.0, Outcome.ALIKE),  # every trial identical on both sides
    ],
)
def test_decide_at_its_boundaries(estimate: float, low: float, high: float, expected: Outcome) -> None:
    assert decide(interval(estimate, low, high), 0.0, 0.1).outcome is expected


def test_one_trial_cannot_decide_and_gives_no_estimate() -> None:
    decision = decide(interval(0.5, None, None, n=1), 0.0, 0.1)
    assert decision.outcome is Outcome.UNDECIDED and decision.needed is None and decision.more is None


def test_a_threshold_without_margin_is_a_one_sided_claim() -> None:
    """ "At least 90 % of ideal" only when the whole interval is at or above 90 %."""
    assert decide(interval(0.95, 0.91, 0.99), 0.9).outcome is Outcome.ABOVE
    assert decide(interval(0.95, 0.89, 1.01), 0.9).outcome is Outcome.UNDECIDED
    assert decide(interval(0.85, 0.80, 0.89), 0.9).outcome is Outcome.BELOW
    assert decide(interval(1.05, 1.01, 1.09), 1.0).outcome is Outcome.ABOVE  # above ideal: an error


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError):
        decide(interval(0, -1, 1), 0.0, -0.1)


def _t_half(spread: float, n: int) -> float:
    return float(stats.t.ppf(0.975, n - 1)) * spread / math.sqrt(n)


def test_needed_trials_is_the_first_count_whose_interval_would_decide() -> None:
    values = [0.05, 0.30, 0.25]  # estimate 0.2, margin 0.1: must stop reaching 0
    found = mean_interval(values)
    decision = decide(found, 0.0, 0.1)
    assert decision.outcome is Outcome.UNDECIDED
    needed = decision.needed
    assert needed is not None and needed > 3
    spread = (found.half_width or 0) * math.sqrt(3) / float(stats.t.ppf(0.975, 2))
    assert _t_half(spread, needed) < found.estimate <= _t_half(spread, needed - 1)
    assert decision.more == needed - 3


def test_needed_trials_towards_alike_and_on_the_margin() -> None:
    small = interval(0.02, -0.2, 0.24)  # |estimate| < margin: the interval must shrink into ±0.1
    needed = needed_n(small, 0.0, 0.1)
    assert needed is not None and needed > 3
    assert needed_n(interval(0.1, -0.2, 0.4), 0.0, 0.1) is None  # on the margin: nothing is sure to decide
