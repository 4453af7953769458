"""The regression gate's decision: is the change (B) slower than its base (A), and how sure is that?

Each metric is measured once per side in every round, A and B interleaved (A B, B A, A B, …), each time in
fresh processes. The unit of evidence is the round: one paired log-ratio `ln(slowdown)` per round, where the
slowdown is B/A for a time and A/B for a rate, so that above 1 always means "B is worse". The 95 % interval
of the mean log-ratio is Student's t across rounds (a paired t test, as pyperf's compare_to does for two
runs), turned back into a ratio. Within-round samples are not pooled: process-to-process variation (memory
layout, CPU placement, what else the machine did) is the larger noise, and only repeated rounds see it.

Verdicts, with a practical margin `threshold` (10 %):
- FAIL: B is slower by more than the margin with 95 % confidence (the whole interval above 1 + margin);
- pass: the whole interval below 1 + margin (any slowdown is smaller than the margin);
- faster: the whole interval below 1 / (1 + margin) (an improvement, with the same confidence);
- cannot tell: the interval straddles 1 + margin; it says how many rounds would decide, if the mean and
  spread stayed as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
DEFAULT_THRESHOLD = 0.10
MIN_ROUNDS = 3  # with 2 rounds t(1) = 12.7: an interval that wide decides nothing
MAX_ROUNDS_ESTIMATE = 99  # "cannot tell" beyond this many rounds is "far more rounds than a gate can run"

PASS, FAIL, FASTER, CANNOT_TELL = "pass", "FAIL", "faster", "cannot tell"


@dataclass(frozen=True)
class Comparison:
    """One metric, A against B over the paired rounds."""

    rounds: int
    a: float  # geometric mean over the rounds, in the metric's unit
    b: float
    slowdown: float  # > 1: B worse than A (B/A for times, A/B for rates)
    low: float  # 95 % interval of the slowdown
    high: float
    verdict: str
    rounds_needed: int | None = None  # cannot tell: rounds that would decide at this mean and spread

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def compare(
    a: Sequence[float],
    b: Sequence[float],
    higher_is_better: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
) -> Comparison:
    """Compare paired per-round values (a[i] and b[i] measured in round i); every value must be > 0."""
    if len(a) != len(b):
        raise ValueError(f"paired rounds needed: {len(a)} values for A, {len(b)} for B")
    if any(v <= 0 or not math.isfinite(v) for v in (*a, *b)):
        raise ValueError("values must be positive and finite (ratios are taken)")
    n = len(a)
    logs = [math.log(x / y) if higher_is_better else math.log(y / x) for x, y in zip(a, b, strict=True)]
    mean = sum(logs) / n
    slowdown = math.exp(mean)
    if n < MIN_ROUNDS:
        low, high = 0.0, math.inf
    elif max(logs) - min(logs) == 0.0:
        low = high = slowdown  # identical rounds: no spread to speak of
    else:
        interval = stats.ttest_1samp(logs, 0.0).confidence_interval(CONFIDENCE)
        low, high = math.exp(float(interval.low)), math.exp(float(interval.high))
    verdict = decide(low, high, threshold)
    needed = rounds_needed(logs, threshold) if verdict == CANNOT_TELL else None
    return Comparison(n, _geometric_mean(a), _geometric_mean(b), slowdown, low, high, verdict, needed)


def decide(low: float, high: float, threshold: float = DEFAULT_THRESHOLD) -> str:
    limit = 1.0 + threshold
    if low > limit:
        return FAIL
    if high < 1.0 / limit:
        return FASTER
    if high < limit:
        return PASS
    return CANNOT_TELL


def rounds_needed(logs: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> int | None:
    """Rounds after which the interval would exclude 1 + threshold, if the mean and spread stayed the same.

    None: the mean sits on the margin (no number of rounds decides) or there is no spread to estimate yet.
    """
    n = len(logs)
    if n < 2:
        return None
    mean = sum(logs) / n
    spread = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    distance = abs(mean - math.log(1.0 + threshold))
    if spread == 0.0 or distance == 0.0:
        return None
    for rounds in range(max(n + 1, MIN_ROUNDS), MAX_ROUNDS_ESTIMATE + 1):
        if stats.t.ppf(0.5 + CONFIDENCE / 2, rounds - 1) * spread / math.sqrt(rounds) < distance:
            return rounds
    return None
