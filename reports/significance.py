"""Verdicts by significance: a claim only when the interval backs it, "cannot tell" otherwise.

One rule for every comparison the report makes, given an interval of a difference (or of a figure) against a
reference (0 for a difference, 0.9 for "90 % of ideal") and a practical margin:

- ABOVE: the interval lies wholly above the reference AND the estimate exceeds it by more than the margin
  (a real difference, and one large enough to matter);
- BELOW: the same, below;
- ALIKE: the whole interval lies within reference ± margin (whatever the difference is, it is too small
  to matter);
- UNDECIDED: anything else — "cannot tell from this run" — with an estimate of how many trials (or samples)
  in all would decide, assuming the estimate stays where it is and the spread shrinks as 1/√n.

With a margin of 0 the rule is a plain one-sided test ("at least 90 % of ideal" only when the whole interval
is at or above 90 %), and ALIKE needs an interval of zero width at the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from scipy import stats

from reports.intervals import CONFIDENCE, Interval

MAX_TRIALS = 10_000  # beyond this, "how many more" is not an answer anyone would act on


class Outcome(Enum):
    ABOVE = "above"
    BELOW = "below"
    ALIKE = "alike"
    UNDECIDED = "cannot tell"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    interval: Interval
    reference: float
    margin: float
    needed: int | None  # UNDECIDED: the n (trials, or samples) that would decide; None: no estimate possible

    @property
    def decided(self) -> bool:
        return self.outcome is not Outcome.UNDECIDED

    @property
    def more(self) -> int | None:
        """How many more trials (or samples) than the interval had, when UNDECIDED and estimable."""
        return None if self.needed is None else max(1, self.needed - self.interval.n)


def decide(interval: Interval, reference: float = 0.0, margin: float = 0.0) -> Decision:
    if margin < 0:
        raise ValueError("margin must be >= 0")
    low, high, estimate = interval.low, interval.high, interval.estimate
    if low is not None and high is not None:
        if low > reference and estimate - reference > margin:
            return Decision(Outcome.ABOVE, interval, reference, margin, None)
        if high < reference and reference - estimate > margin:
            return Decision(Outcome.BELOW, interval, reference, margin, None)
        if reference - margin <= low and high <= reference + margin:
            return Decision(Outcome.ALIKE, interval, reference, margin, None)
    return Decision(Outcome.UNDECIDED, interval, reference, margin, needed_n(interval, reference, margin))


def _target_half_width(estimate: float, reference: float, margin: float) -> float:
    """The half-width at which the current estimate would be decided one way or the other."""
    distance = abs(estimate - reference)
    if distance > margin:
        return distance  # the interval must stop reaching the reference
    return margin - distance  # the interval must fit inside the margin


def needed_n(interval: Interval, reference: float, margin: float) -> int | None:
    """Smallest n whose interval, at the same spread per trial, would decide; None when it cannot be
    estimated (no interval yet, the estimate sits exactly on the margin, or more than MAX_TRIALS)."""
    half, n = interval.half_width, interval.n
    if half is None or n < 2:
        return None
    target = _target_half_width(interval.estimate, reference, margin)
    if target <= 0:
        return None
    if half <= target:
        return n + 1  # at the border: one more trial should tip it
    # Spread per trial: half = t(n−1)·s/√n. Assume s stays; find the first n' with t(n'−1)·s/√n' < target.
    spread = half * math.sqrt(n) / _t(n - 1)
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))  # t > z for every df: no n' below (z·s/target)² decides
    start = max(n + 1, math.floor((z * spread / target) ** 2))
    for candidate in range(start, MAX_TRIALS + 1):
        if _t(candidate - 1) * spread / math.sqrt(candidate) < target:
            return candidate
    return None


def _t(df: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))
