"""Ratios measured within one run, for the CI regression gate (`ragload bench-gate`).

Two sources, both written by `make bench-ci`: a quick-profile run folder (`ragload bench --profile quick`)
and the JSON of the micro-benchmarks (`pytest benchmarks --benchmark-json=FILE`). Every figure is divided
by a reference measured in the same run, so that a slower or busier machine moves both sides alike.

Throughput is compared with W / S where S is the *configured* upstream time, not with `ideal_rps`: ideal_rps
adds the calibrated overhead, and a slowdown inside the job raises that overhead too and would hide itself.
The calibrated overhead is gated on its own (against the inline overhead and against S).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.run_data import CellSummary, RunData

MICRO_STAT = "min"  # noise only ever adds time: the fastest round is nearest the code's own cost
CPU_REFERENCE = "test_cpu_reference"
MOCK_LATENCY_BENCH = "test_mock_chat_at_configured_latency"
# The mock's timers may fire a fraction of a millisecond early, so its fastest call says nothing about the
# latency it adds: the typical call does.
MOCK_LATENCY_STAT = "median"
# metric -> (numerator benchmark, denominator benchmark): the hot path over a same-run reference.
MICRO_RATIOS: dict[str, tuple[str, str]] = {
    "enqueue_status_vs_cpu_reference": ("test_enqueue_and_status", CPU_REFERENCE),
    "pipeline_vs_cpu_reference": ("test_pipeline_inline", CPU_REFERENCE),
    "job_vs_pipeline": ("test_job_process_query", "test_pipeline_inline"),
    "mock_chat_vs_cpu_reference": ("test_mock_chat", CPU_REFERENCE),
    "summary_vs_cpu_reference": ("test_summary", CPU_REFERENCE),
}


@dataclass(frozen=True)
class Ratio:
    metric: str
    value: float
    detail: str  # the two figures it was computed from, for a reader of the table


class InputError(ValueError):
    """An input the ratios cannot be computed from; the message says which and why."""


# ---- the quick-profile run folder --------------------------------------------------------------------------


def configured_service_ms(run: RunData) -> float:
    """Mean configured upstream time of one request (embeddings + chat), without any measured overhead."""
    model = run.config.get("service_time_model") or {}
    value = model.get("service_time_ms")
    if not isinstance(value, int | float) and run.cells:
        value = run.cells[0].number("service_time_ms")
    if not isinstance(value, int | float) or value <= 0:
        raise InputError(f"{run.run_dir}: no configured service time (config.json service_time_model)")
    return float(value)


def _capacity_ratio(metric: str, cell: CellSummary, service_ms: float) -> Ratio | None:
    if cell.throughput_rps is None or not cell.workers:
        return None
    capacity = cell.workers * 1000 / service_ms
    detail = f"{cell.throughput_rps:.2f} rps / ({cell.workers} / {service_ms:g} ms = {capacity:.2f} rps)"
    return Ratio(metric, cell.throughput_rps / capacity, detail)


def _latency_ratio(metric: str, cell: CellSummary, service_ms: float) -> Ratio | None:
    if cell.p50_ms is None:
        return None
    return Ratio(metric, cell.p50_ms / service_ms, f"p50 {cell.p50_ms:.1f} ms / {service_ms:g} ms")


def _rate_tag(rate: float | None) -> str:
    return f"r{rate:g}" if rate is not None else "r?"


def cell_ratios(run: RunData) -> list[Ratio]:
    """Queued cells: ok throughput / (W / S). Sync cells: p50 / S (what the inline path adds to S)."""
    service_ms = configured_service_ms(run)
    ratios: list[Ratio | None] = []
    for cell in run.cells:
        if cell.architecture == "queued" and cell.load == "closed":
            ratios.append(_capacity_ratio(f"queued_w{cell.workers}_throughput_vs_capacity", cell, service_ms))
        elif cell.architecture == "queued":
            metric = f"queued_open_w{cell.workers}_{_rate_tag(cell.rate)}_throughput_vs_capacity"
            ratios.append(_capacity_ratio(metric, cell, service_ms))
        else:
            metric = f"sync_{cell.mode}_{_rate_tag(cell.rate)}_p50_vs_service"
            ratios.append(_latency_ratio(metric, cell, service_ms))
    return [ratio for ratio in ratios if ratio is not None]


def overhead_ratios(run: RunData) -> list[Ratio]:
    """The calibrated machinery overhead at zero upstream latency (loadtests/calibrate.py)."""
    overhead = run.config.get("overhead_ms") or run.meta.get("overhead_ms") or {}
    queued, sync = overhead.get("queued"), overhead.get("sync")
    ratios = []
    if isinstance(queued, int | float):
        service_ms = configured_service_ms(run)
        detail = f"{queued:g} ms / {service_ms:g} ms"
        ratios.append(Ratio("queued_overhead_vs_service", queued / service_ms, detail))
        if isinstance(sync, int | float) and sync > 0:
            detail = f"{queued:g} ms / {sync:g} ms"
            ratios.append(Ratio("queued_overhead_vs_inline_overhead", queued / sync, detail))
    return ratios


def run_ratios(run: RunData) -> list[Ratio]:
    return [*cell_ratios(run), *overhead_ratios(run)]


# ---- the micro-benchmarks' JSON ----------------------------------------------------------------------------


def benchmark_stats(report: Mapping[str, Any], stat: str = MICRO_STAT) -> dict[str, float]:
    """Benchmark name -> the statistic in seconds, from pytest-benchmark's `--benchmark-json` output."""
    benchmarks = report.get("benchmarks")
    if not isinstance(benchmarks, list):
        raise InputError("not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return {
        str(entry["name"]): float(entry["stats"][stat])
        for entry in benchmarks
        if isinstance(entry, dict) and entry.get("stats")
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"


def micro_ratios(report: Mapping[str, Any]) -> list[Ratio]:
    stats = benchmark_stats(report)
    ratios = []
    for metric, (numerator, denominator) in MICRO_RATIOS.items():
        if numerator in stats and stats.get(denominator):
            detail = f"{MICRO_STAT} {_ms(stats[numerator])} / {_ms(stats[denominator])}"
            ratios.append(Ratio(metric, stats[numerator] / stats[denominator], detail))
    added = mock_added_latency(report)
    return ratios if added is None else [*ratios, added]


def mock_added_latency(report: Mapping[str, Any]) -> Ratio | None:
    """(time of a call to the mock configured at L) - L, over L."""
    stats = benchmark_stats(report, MOCK_LATENCY_STAT)
    entry = _entry(report.get("benchmarks") or [], MOCK_LATENCY_BENCH)
    configured_ms = (entry or {}).get("extra_info", {}).get("configured_ms")
    if MOCK_LATENCY_BENCH not in stats or not isinstance(configured_ms, int | float) or configured_ms <= 0:
        return None
    added_ms = stats[MOCK_LATENCY_BENCH] * 1000 - configured_ms
    detail = f"{MOCK_LATENCY_STAT} {added_ms:.2f} ms added / {configured_ms:g} ms configured"
    return Ratio("mock_added_latency_vs_configured", added_ms / configured_ms, detail)


def _entry(benchmarks: Sequence[Any], name: str) -> dict[str, Any] | None:
    return next((e for e in benchmarks if isinstance(e, dict) and e.get("name") == name), None)
