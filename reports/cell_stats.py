"""A cell's figures with their 95 % intervals, from its trials (reports/intervals.py does the statistics).

Across trials (Student t): throughput, share of ideal, goodput. Pooled over the trials' requests: timeout
rate and SLO attainment (Wilson), latency percentiles (order statistic; "n too small" below the count a
distribution-free interval needs). Requests inside one trial are not independent (a backlog delays its
neighbours), so the pooled intervals are the narrower kind; the comparisons between cells therefore use
the trial-to-trial spread (paired differences), which carries that dependence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reports.intervals import Interval, mean_interval, quantile_interval, samples_needed, wilson

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class TrialFigures:
    """What one trial contributes (a summary.csv row, plus its per-request latencies when on disk)."""

    throughput_rps: float | None
    ideal_rps: float | None
    requests: int
    timeouts: int
    slo_ok: int | None = None
    goodput_rps: float | None = None
    offered_rps: float | None = None
    percentiles: Mapping[int, float | None] = field(default_factory=dict)  # the row's own, as fallback
    latencies_ms: Sequence[float] | None = None  # counted latencies (a timeout = the deadline)


@dataclass(frozen=True)
class CellStats:
    trials: int
    throughput: Interval | None
    ratio: Interval | None  # throughput / ideal_rps, per trial
    timeout_rate: Interval | None
    slo_attainment: Interval | None
    goodput: Interval | None
    offered: Interval | None
    percentiles: Mapping[int, Interval | None]
    requests: int

    def percentile(self, p: int) -> Interval | None:
        return self.percentiles.get(p)

    @staticmethod
    def needed(p: int) -> int:
        """Requests a distribution-free interval of the p-th percentile needs."""
        return samples_needed(p / 100)


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _mean(values: Sequence[float | None]) -> Interval | None:
    present = _present(values)
    return mean_interval(present) if present else None


def cell_stats(trials: Sequence[TrialFigures]) -> CellStats:
    requests = sum(t.requests for t in trials)
    ratios = [
        t.throughput_rps / t.ideal_rps if t.throughput_rps is not None and t.ideal_rps else None
        for t in trials
    ]
    slo_known = all(t.slo_ok is not None for t in trials)
    return CellStats(
        trials=len(trials),
        throughput=_mean([t.throughput_rps for t in trials]),
        ratio=_mean(ratios),
        timeout_rate=wilson(sum(t.timeouts for t in trials), requests),
        slo_attainment=wilson(sum(t.slo_ok or 0 for t in trials), requests) if slo_known else None,
        goodput=_mean([t.goodput_rps for t in trials]),
        offered=_mean([t.offered_rps for t in trials]),
        percentiles={p: _percentile(trials, p) for p in PERCENTILES},
        requests=requests,
    )


def _percentile(trials: Sequence[TrialFigures], p: int) -> Interval | None:
    """Pooled over every trial's requests; without per-request data, a single trial's own figure (no
    interval), or the mean of the trials' figures (no interval either: percentiles do not average)."""
    if all(t.latencies_ms is not None for t in trials):
        pooled = [v for t in trials for v in t.latencies_ms or ()]
        return quantile_interval(pooled, p / 100)
    own = _present([t.percentiles.get(p) for t in trials])
    if not own:
        return None
    return Interval(sum(own) / len(own), None, None, sum(t.requests for t in trials), "trial figure")
