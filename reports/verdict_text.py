"""The shared vocabulary of the verdict lines: the Verdict record and how loads, times, series and
intervals read. An interval reads `estimate [low, high]` (95 %); a figure without one says why."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reports.cell_stats import CellStats
from reports.intervals import Interval
from reports.run_data import CellSummary
from reports.significance import Decision

TIMEOUT_ONSET = 0.01  # a cell "times out" when more than 1 % of its requests passed the deadline
LOAD_NAMES = {"closed": "closed loop", "open": "open loop"}


@dataclass(frozen=True)
class Verdict:
    topic: str
    text: str
    supported: bool = True  # False: the comparison is impossible with this run; `text` says why


def format_ms(ms: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def format_load(cell: CellSummary) -> str:
    value = cell.load_value
    if value is None:
        return "unknown load"
    return f"{value:g} users" if cell.load == "closed" else f"{value:g} req/s"


def series_name(cell: CellSummary) -> str:
    return f"{cell.architecture}/{cell.mode}"


def format_interval(interval: Interval | None, show: Callable[[float], str], unit: str = "") -> str:
    """`23.3 req/s [22.9, 23.7]`; `23.3 req/s (1 trial: no interval)` when the bounds are unknown."""
    if interval is None:
        return "n/a"
    unit_text = f" {unit}" if unit else ""
    if interval.low is None or interval.high is None:
        why = "1 trial: no interval" if interval.method in ("t", "paired t") else "no interval"
        return f"{show(interval.estimate)}{unit_text} ({why})"
    return f"{show(interval.estimate)}{unit_text} [{show(interval.low)}, {show(interval.high)}]"


def rate_text(interval: Interval | None) -> str:
    """A rate, never below 0: `23.3 req/s [22.9, 23.7]`."""
    if interval is None:
        return "n/a"
    return format_interval(interval.clipped(0.0), lambda v: f"{v:.1f}", "req/s")


def percent_text(interval: Interval | None, digits: int = 1, share: bool = True) -> str:
    """A share as percent, e.g. `13.1 % [11.2, 15.0]`, cut to 0–100 % (`share=False`: ≥ 0 only, e.g. a
    share of ideal, which a measurement error can push past 100 %)."""
    if interval is None:
        return "n/a"
    shown = interval.clipped(0.0, 1.0 if share else None).scaled(100)
    return format_interval(shown, lambda v: f"{v:.{digits}f}", "%")


def points_text(interval: Interval | None) -> str:
    """A difference of two shares in percentage points, signed, e.g. `-74.7 points [-78.0, -71.4]`."""
    if interval is None:
        return "n/a"
    return format_interval(interval.clipped(-1.0, 1.0).scaled(100), lambda v: f"{v:+.1f}", "points")


def ms_text(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    return format_interval(interval, lambda v: format_ms(v))


def percentile_text(stats: CellStats, p: int) -> str:
    """A latency percentile with its order-statistic interval, or why there is none."""
    found = stats.percentile(p)
    if found is None:
        return "n/a"
    if found.known:
        return f"{format_ms(found.estimate)} [{format_ms(found.low)}, {format_ms(found.high)}]"
    if found.n < stats.needed(p):
        return f"n too small (need ≥ {stats.needed(p)})"
    return format_ms(found.estimate)


def more_trials_text(decision: Decision, trial_s: float | None = None) -> str:
    """`about 4 more trials would decide (≈ 1.2 min)`, or why no estimate can be made."""
    if decision.interval.n < 2:
        return "a second trial at least would give an interval (run with --repeats 3 or more)"
    more = decision.more
    if more is None:
        return "the estimate sits on the margin: no number of trials is sure to decide"
    cost = f", ≈ {more * trial_s / 60:.1f} min more per cell" if trial_s else ""
    return f"about {more} more trial{'s' if more != 1 else ''} per cell would decide{cost}"


def measured(cells: Iterable[CellSummary]) -> list[CellSummary]:
    """Cells with at least one request and a known load."""
    return [c for c in cells if c.requests > 0 and c.load_value is not None]
