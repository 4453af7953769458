"""One cell's samples and server samples → one row of `summary.csv`.

Rules (docs/architecture.md, "Measurement rules"): percentiles are over ALL end-to-end requests, a timeout
counted with latency = the deadline (never dropped); throughput counts only ok responses; `ideal_rps` is the
physical limit of the cell (the lower of the server-side and the client-side bound).
Percentiles are nearest-rank: p99 is a latency that at least 99 % of the requests did not exceed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.sweep.profile import Cell
from loadtests.sweep.samples import Sample

GENERATOR_SATURATED_PCT = 80.0  # one generator process above this share of a core delays its own requests

SUMMARY_COLUMNS = (
    "cell_id",
    "architecture",
    "mode",
    "load",
    "workers",
    "users",
    "rate",
    "processes",
    "threads",
    "concurrency",
    "requests",
    "ok",
    "timeouts",
    "errors",
    "timeout_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "mean_ms",
    "offered_rps",
    "throughput_rps",
    "ideal_rps",
    "ideal_bound",
    "throughput_ratio",
    "service_time_ms",
    "overhead_ms",
    "deadline_s",
    "duration_s",
    "submit_p99_ms",
    "probe_p99_ms",
    "probe_timeouts",
    "mean_queue_wait_ms",
    "mean_run_ms",
    "mean_polls",
    "late_arrivals",
    "pool_exhausted",
    "max_queue_depth",
    "mean_busy_workers",
    "generator_cpu_pct",
    "generator_saturated",
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def counted_latency_ms(sample: Sample, deadline_s: float) -> float:
    """A timeout counts as the deadline; anything else as measured."""
    return deadline_s * 1000 if sample.outcome == "timeout" else sample.latency_ms


def ideal_rps(cell: Cell) -> tuple[float, str]:
    """(requests per second, "server" or "client": which bound is the lower).

    S = the configured upstream latency + the measured overhead (loadtests/sweep/calibrate.py).
    Server: W workers / S for the queued system, concurrency / S for the baseline (asyncio: unbounded,
    only the upstream limits it). Client: closed loop, users / S (each user has one request in flight,
    each lasts at least S); open loop, the offered rate.
    """
    service_s = (cell.service_time_ms + cell.overhead_ms) / 1000
    if cell.load == "closed":
        client = (cell.users or 0) / service_s
    else:
        client = cell.rate or 0.0
    if cell.architecture == "queued":
        server = (cell.workers or 0) / service_s
    else:
        server = cell.concurrency / service_s if cell.concurrency else math.inf
    return (server, "server") if server <= client else (client, "client")


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def in_window(rows: Iterable[Mapping[str, float]], cell: Cell) -> list[Mapping[str, float]]:
    end = cell.warmup_s + cell.duration_s
    return [row for row in rows if cell.warmup_s <= row["t"] <= end]


def summarize(
    cell: Cell,
    samples: Sequence[Sample],
    server_rows: Sequence[Mapping[str, float]] = (),
    late_arrivals: int = 0,
    completed_ok: int | None = None,
) -> dict[str, Any]:
    """`samples`: the cell's requests started in the measured window; `server_rows`: sampler rows.

    `completed_ok`: ok responses that ARRIVED within the window (the sweep counts them over all requests,
    warm-up included). Throughput is that count / duration: a server's rate of finishing work, free of the
    boundary error of counting starts (up to one request per closed-loop user). Without it: ok starts.
    """
    e2e = [s for s in samples if s.kind == "e2e"]
    latencies = [counted_latency_ms(s, cell.deadline_s) for s in e2e]
    ok = sum(s.outcome == "ok" for s in e2e)
    timeouts = sum(s.outcome == "timeout" for s in e2e)
    errors = sum(s.outcome == "error" for s in e2e)
    submits = [counted_latency_ms(s, cell.deadline_s) for s in samples if s.kind == "submit"]
    probes = [s for s in samples if s.kind == "probe"]
    ideal, bound = ideal_rps(cell)
    throughput = (ok if completed_ok is None else completed_ok) / cell.duration_s
    server = in_window(server_rows, cell)
    generator_cpu = _mean(row.get("cpu_generator") for row in server)
    depths = [row["queue_depth"] for row in server if row.get("queue_depth") is not None]
    ok_e2e = [s for s in e2e if s.outcome == "ok"]
    return {
        "cell_id": cell.cell_id,
        "architecture": cell.architecture,
        "mode": cell.mode,
        "load": cell.load,
        "workers": cell.workers,
        "users": cell.users,
        "rate": cell.rate,
        "processes": cell.processes,
        "threads": cell.threads,
        "concurrency": cell.concurrency,
        "requests": len(e2e),
        "ok": ok,
        "timeouts": timeouts,
        "errors": errors,
        "timeout_rate": _round(timeouts / len(e2e), 4) if e2e else None,
        "p50_ms": _round(percentile(latencies, 50)),
        "p95_ms": _round(percentile(latencies, 95)),
        "p99_ms": _round(percentile(latencies, 99)),
        "max_ms": _round(max(latencies) if latencies else None),
        "mean_ms": _round(_mean(latencies)),
        "offered_rps": round(len(e2e) / cell.duration_s, 3),
        "throughput_rps": round(throughput, 3),
        "ideal_rps": round(ideal, 3),
        "ideal_bound": bound,
        "throughput_ratio": round(throughput / ideal, 4) if ideal > 0 else None,
        "service_time_ms": cell.service_time_ms,
        "overhead_ms": cell.overhead_ms,
        "deadline_s": cell.deadline_s,
        "duration_s": cell.duration_s,
        "submit_p99_ms": _round(percentile(submits, 99)),
        "probe_p99_ms": _round(percentile([counted_latency_ms(s, cell.deadline_s) for s in probes], 99)),
        "probe_timeouts": sum(s.outcome == "timeout" for s in probes),
        "mean_queue_wait_ms": _round(_mean(s.queue_wait_ms for s in ok_e2e)),
        "mean_run_ms": _round(_mean(s.run_ms for s in ok_e2e)),
        "mean_polls": _round(_mean(float(s.polls) if s.polls is not None else None for s in e2e)),
        "late_arrivals": late_arrivals if cell.load == "open" else None,
        "pool_exhausted": late_arrivals > 0 if cell.load == "open" else None,
        "max_queue_depth": max(depths) if depths else None,
        "mean_busy_workers": _round(_mean(row.get("busy_workers") for row in server)),
        "generator_cpu_pct": _round(generator_cpu, 1),
        "generator_saturated": generator_cpu is not None and generator_cpu > GENERATOR_SATURATED_PCT,
    }


def write_summary(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        out.writeheader()
        for row in rows:
            out.writerow({key: "" if value is None else value for key, value in row.items()})
