"""The upstream as the cells saw it: each chat call's time to first token and total latency against the
calls in flight when it started, from the mock's call log (`cells/<trial>/upstream_calls.csv`), and the
capacity model's curve and knee the harness wrote into config.json (`upstreams`).

Calls in flight at a call's start count the chat calls that had started and not yet ended (the call log
gives each call's start on the mock's clock and its duration), so the figure is what the upstream had to
share among, not what the client sent. A trial's call log starts at the mock's reset, just before the
cell's first request (a call that started before it belongs to an earlier cell still running: it counts in
flight, and the report says so); calls in the cell's warm-up are left out. Medians carry their
order-statistic interval, pooled over the trials' calls.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from reports.intervals import Interval, quantile_interval
from reports.run_data import CellSummary, RunData

CALL_LOG = "upstream_calls.csv"
# Bins of calls in flight for the plot: one per count up to 16, then wider (a burst reaches hundreds).
BIN_EDGES = (*range(1, 17), 20, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


@dataclass(frozen=True)
class Call:
    started_ms: float
    total_ms: float
    ttft_ms: float | None
    ok: bool
    in_flight: int = 0  # chat calls in flight when it started, itself included


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_calls(path: Path, warmup_s: float = 0.0) -> tuple[list[Call], int]:
    """The chat calls a trial made after its warm-up, each with the calls in flight at its start (calls still
    running from before the mock's reset count there: they loaded the upstream too), and how many such
    calls of an earlier cell the log holds; ([], 0) without a log."""
    if not path.is_file():
        return [], 0
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("endpoint") == "chat"]
    calls = []
    for row in rows:
        started, total = _number(row.get("started_ms")), _number(row.get("actual_ms"))
        if started is None or total is None:
            continue
        calls.append(Call(started, total, _number(row.get("ttft_ms")), row.get("status") == "200"))
    counted = with_in_flight(calls)
    before = sum(c.started_ms < 0 for c in counted)
    return [c for c in counted if c.started_ms >= warmup_s * 1000], before


def with_in_flight(calls: Sequence[Call]) -> list[Call]:
    """Each call with the chat calls in flight at its start (started at or before it, not yet ended)."""
    starts = sorted(c.started_ms for c in calls)
    ends = sorted(c.started_ms + c.total_ms for c in calls)
    return [
        Call(
            c.started_ms,
            c.total_ms,
            c.ttft_ms,
            c.ok,
            bisect.bisect_right(starts, c.started_ms) - bisect.bisect_right(ends, c.started_ms),
        )
        for c in calls
    ]


@dataclass(frozen=True)
class CellUpstream:
    """What one cell's chat calls met at the upstream, pooled over its trials."""

    calls: tuple[Call, ...]
    before: int = 0  # calls of earlier cells still running when the trials started (all trials)

    @cached_property
    def in_flight(self) -> Interval | None:
        """Median calls in flight at a call's start."""
        return quantile_interval([float(c.in_flight) for c in self.calls], 0.5)

    @property
    def peak_in_flight(self) -> int | None:
        return max((c.in_flight for c in self.calls), default=None)

    @cached_property
    def latency(self) -> Interval | None:
        """Median total time of the calls answered (200)."""
        return quantile_interval([c.total_ms for c in self.calls if c.ok], 0.5)

    @cached_property
    def ttft(self) -> Interval | None:
        return quantile_interval([c.ttft_ms for c in self.calls if c.ok and c.ttft_ms is not None], 0.5)


def cell_upstream(run: RunData, cell: CellSummary) -> CellUpstream | None:
    """The cell's calls over all its trials; None when no trial left a call log."""
    calls: list[Call] = []
    before = 0
    for trial in cell.runs:
        folder = run.run_dir / "cells" / trial.trial_id
        found, earlier = read_calls(folder / CALL_LOG, trial.number("warmup_s") or 0.0)
        calls += found
        before += earlier
    return CellUpstream(tuple(calls), before) if calls else None


@dataclass(frozen=True)
class UpstreamModel:
    """An upstream as config.json describes it (`upstreams.<name>`)."""

    name: str
    service_time_ms: float | None
    knee_concurrency: int | None  # None: no capacity model
    knee_rps: float | None
    curve: tuple[Mapping[str, float], ...]  # concurrency, ttft_ms, latency_ms, rps (closed-loop means)

    @property
    def has_knee(self) -> bool:
        return self.knee_concurrency is not None

    @property
    def alone(self) -> Mapping[str, float] | None:
        """The curve's point at one call in flight."""
        return self.curve[0] if self.curve else None


def upstream_models(run: RunData) -> dict[str, UpstreamModel]:
    found = run.config.get("upstreams")
    if not isinstance(found, Mapping):
        return {}
    models = {}
    for name, facts in found.items():
        if not isinstance(facts, Mapping):
            continue
        found_knee = facts.get("knee")
        knee: Mapping[str, Any] = found_knee if isinstance(found_knee, Mapping) else {}
        curve = tuple(p for p in facts.get("curve") or () if isinstance(p, Mapping))
        service = facts.get("service_time_ms")
        models[str(name)] = UpstreamModel(
            name=str(name),
            service_time_ms=float(service) if isinstance(service, int | float) else None,
            knee_concurrency=int(knee["concurrency"]) if "concurrency" in knee else None,
            knee_rps=float(knee["rps"]) if "rps" in knee else None,
            curve=curve,
        )
    return models


def cell_upstream_name(cell: CellSummary) -> str:
    return cell.extra.get("upstream", "").strip()


@dataclass(frozen=True)
class Bin:
    low: int  # calls in flight, inclusive
    high: int  # inclusive
    ttft: Interval | None
    latency: Interval | None
    calls: int

    @property
    def middle(self) -> float:
        return (self.low + self.high) / 2


def binned(calls: Iterable[Call]) -> list[Bin]:
    """Median time to first token and total latency of the answered calls, per bin of calls in flight."""
    answered = [c for c in calls if c.ok]
    bins = []
    for low, next_low in zip(BIN_EDGES, BIN_EDGES[1:], strict=False):
        members = [c for c in answered if low <= c.in_flight < next_low]
        if not members:
            continue
        ttfts = [c.ttft_ms for c in members if c.ttft_ms is not None]
        bins.append(
            Bin(
                low,
                next_low - 1,
                quantile_interval(ttfts, 0.5) if ttfts else None,
                quantile_interval([c.total_ms for c in members], 0.5),
                len(members),
            )
        )
    return bins


def calls_by_upstream(run: RunData) -> dict[str, list[Call]]:
    """Every measured chat call of the run, per upstream the cells ran against."""
    found: dict[str, list[Call]] = {}
    for cell in run.cells:
        seen = cell_upstream(run, cell)
        if seen is not None:
            found.setdefault(cell_upstream_name(cell), []).extend(seen.calls)
    return found


def describe(model: UpstreamModel) -> str:
    """One line on an upstream's model, for the report's upstream section."""
    if not model.has_knee:
        service = f"; a RAG request alone ≈ {model.service_time_ms:.0f} ms" if model.service_time_ms else ""
        return (
            f"{model.name}: no capacity limit (every call its own latency draw, any number at once){service}."
        )
    alone = model.alone or {}
    knee = next((p for p in model.curve if p.get("concurrency") == model.knee_concurrency), {})
    return (
        f"{model.name}: a batching engine whose throughput peaks at ≈ {model.knee_rps:.1f} RAG requests/s "
        f"with {model.knee_concurrency} calls in flight (the knee); a chat call alone takes "
        f"{alone.get('latency_ms', 0):.0f} ms (first token {alone.get('ttft_ms', 0):.0f} ms), at the knee "
        f"{knee.get('latency_ms', 0):.0f} ms (first token {knee.get('ttft_ms', 0):.0f} ms); past it every "
        "call waits for a slot and the engine slows (the model's closed-loop means, computed by the harness)."
    )
