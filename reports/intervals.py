"""95 % confidence intervals for the report's figures, all from scipy.stats.

- Across trials (throughput, % of ideal, paired queued-minus-inline differences): Student t on the trials'
  values; one trial gives no interval.
- Within a cell, percentiles: the distribution-free order-statistic interval (scipy.stats.quantile_test),
  which exists only from a number of samples on (`samples_needed`: 6 for p50, 72 for p95, 368 for p99).
- Rates of requests (timeouts, SLO attainment): Wilson score interval of the pooled counts.
- What an extra worker buys: the least-squares slope of throughput on workers over every trial, t with n − 2
  degrees of freedom (scipy.stats.linregress's standard error).

The t intervals are written out (mean ± t·s/√n, the t quantile from scipy) rather than taken from
`scipy.stats.ttest_1samp(...).confidence_interval`, which warns and returns NaN for identical values: a cell
whose every trial timed out 0 % must get the interval [0, 0], not an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate and its two-sided confidence interval; `low`/`high` None when it cannot be computed."""

    estimate: float
    low: float | None
    high: float | None
    n: int  # trials (t), requests (Wilson, order statistic) or points (slope) behind it
    method: str

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    def covers(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def overlaps(self, other: Interval) -> bool:
        if not (self.known and other.known):
            return False
        assert self.low is not None and self.high is not None
        assert other.low is not None and other.high is not None
        return self.low <= other.high and other.low <= self.high

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (e.g. × 100 for percent); `factor` must be positive."""
        return Interval(
            self.estimate * factor,
            None if self.low is None else self.low * factor,
            None if self.high is None else self.high * factor,
            self.n,
            self.method,
        )

    def clipped(self, lowest: float | None = None, highest: float | None = None) -> Interval:
        """The interval cut to a quantity's possible range (a rate is never below 0, a share never above 1):
        for display; decisions use the interval as computed."""

        def clip(value: float | None) -> float | None:
            if value is None:
                return None
            if lowest is not None:
                value = max(lowest, value)
            return value if highest is None else min(highest, value)

        return Interval(self.estimate, clip(self.low), clip(self.high), self.n, self.method)

    def shifted(self, offset: float) -> Interval:
        return Interval(
            self.estimate + offset,
            None if self.low is None else self.low + offset,
            None if self.high is None else self.high + offset,
            self.n,
            self.method,
        )


def _t_quantile(df: float, confidence: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student t interval of the mean of independent trials (no interval from fewer than two)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = float(np.mean(values))
    if n < 2:
        return Interval(mean, None, None, n, "t")
    half = _t_quantile(n - 1, confidence) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, "t")


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of a[i] − b[i] over pairs measured under the same seed: t on the differences."""
    if len(a) != len(b):
        raise ValueError("paired values need the same count on both sides")
    found = mean_interval([x - y for x, y in zip(a, b, strict=True)], confidence)
    return Interval(found.estimate, found.low, found.high, found.n, "paired t")


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of a minus mean of b, independent samples of unequal variance (Welch–Satterthwaite df)."""
    if not a or not b:
        raise ValueError("no values")
    estimate = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return Interval(estimate, None, None, min(len(a), len(b)), "Welch t")
    va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    se2 = va + vb
    if se2 == 0:
        return Interval(estimate, estimate, estimate, min(len(a), len(b)), "Welch t")
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = _t_quantile(df, confidence) * math.sqrt(se2)
    return Interval(estimate, estimate - half, estimate + half, min(len(a), len(b)), "Welch t")


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson score interval of a proportion (None for no trials)."""
    if trials <= 0:
        return None
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(successes / trials, float(ci.low), float(ci.high), trials, "Wilson")


def samples_needed(p: float, confidence: float = CONFIDENCE) -> int:
    """Fewest samples for which a distribution-free interval of the p-quantile exists at `confidence`:
    both the smallest and the largest sample must be unlikely (≤ α/2) to bracket the quantile alone."""
    tail = (1 - confidence) / 2
    return math.ceil(math.log(tail) / math.log(max(p, 1 - p)))


def nearest_rank(values: Sequence[float], p: float) -> float:
    """Nearest-rank p-quantile (0 < p < 1): a value that at least a share p of the values do not exceed."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def quantile_interval(values: Sequence[float], p: float, confidence: float = CONFIDENCE) -> Interval | None:
    """Nearest-rank p-quantile and its order-statistic interval (scipy.stats.quantile_test); the bounds are
    None below `samples_needed(p)` values. None for no values."""
    if not values:
        return None
    estimate = nearest_rank(values, p)
    if len(values) < samples_needed(p, confidence):
        return Interval(estimate, None, None, len(values), "order statistic")
    ci = stats.quantile_test(np.asarray(values, dtype=float), q=estimate, p=p).confidence_interval(confidence)
    low, high = float(ci.low), float(ci.high)
    if math.isnan(low) or math.isnan(high):
        return Interval(estimate, None, None, len(values), "order statistic")
    return Interval(estimate, low, high, len(values), "order statistic")


def slope_interval(
    xs: Sequence[float], ys: Sequence[float], confidence: float = CONFIDENCE
) -> Interval | None:
    """Least-squares slope of y on x and its t interval (n − 2 df); None below two distinct x."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys need the same length")
    if len(set(xs)) < 2:
        return None
    fit = stats.linregress(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    slope = float(fit.slope)
    if len(xs) < 3:
        return Interval(slope, None, None, len(xs), "least squares")
    half = _t_quantile(len(xs) - 2, confidence) * float(fit.stderr)
    return Interval(slope, slope - half, slope + half, len(xs), "least squares")
