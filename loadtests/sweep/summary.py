"""One cell's samples and server samples → one row of `summary.csv`.

Rules (docs/architecture.md, "Measurement rules"): percentiles are over ALL end-to-end requests, a timeout
counted with latency = the deadline (never dropped); throughput counts only ok responses; `ideal_rps` is the
physical limit of the cell (the lower of the server-side and the client-side bound), from the configured
upstream time alone. Percentiles are nearest-rank: p99 is a latency that at least 99 % of the requests did
not exceed. One row is one trial; the report aggregates a cell's trials and puts intervals on them.

Goodput: requests started in the window and answered ok within the SLO (default: the deadline; for the
queued system also a submit SLO), per second. Testbed limit: a cell whose single-process server (API,
single-process baseline, mock, Valkey) averaged ≥ 85 % of a core, or whose machine averaged ≥ 90 % of all
its cores, measured the machine as much as the architecture.

Queue engine (docs/architecture.md, "A run folder"): a queued cell's `engine` is `rq` (one job per worker
process) or `saq` (asyncio workers, `jobs_per_worker` = C jobs in flight per process); RQ's
`jobs_per_worker` is 1 (a queued saq cell's `concurrency` is its C). Both are empty for an inline cell.

Memory: the means over the window of the sampler's RSS columns (loadtests/sweep/sampler.py; RSS in MiB):
`rss_api_mb`, `rss_worker_mb` and `rss_baseline_mb` per serving process (a worker process of the pool, a
uvicorn worker), `rss_workers_total_mb` and `rss_baseline_total_mb` over every process of the role,
supervisors included, `worker_processes` the mean count of worker processes. Only the roles serving the cell
(queued: API and workers; inline: baseline); empty when not sampled.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.sweep.profile import Cell
from loadtests.sweep.samples import Sample
from mocks.latency import parse_duration

GENERATOR_SATURATED_PCT = 80.0  # one generator process above this share of a core delays its own requests
SINGLE_PROCESS_BUSY_PCT = 85.0  # a one-process server this busy is near its core's limit (the GIL's too)
MACHINE_BUSY_SHARE = 0.90  # the whole machine this busy: every process waits for a core
# Roles that run as one process whatever the cell: the API, the mock, Valkey (the baseline too at p1).
SINGLE_PROCESS_ROLES = {"api": "cpu_api", "mock": "cpu_mock", "valkey": "cpu_valkey"}

SUMMARY_COLUMNS = (
    "cell_id",
    "cell",
    "trial",
    "seed",
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
    "warmup_s",
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
    "slo_e2e_ms",
    "slo_submit_ms",
    "slo_ok",
    "slo_attainment",
    "goodput_rps",
    "cpu_machine_pct",
    "busiest_process",
    "busiest_process_pct",
    "testbed_limited",
    "upstream_draw_ms",  # the trial's mean upstream draw per request (mock's GET /_mock/calls), vs S
    "upstream",  # the upstream profile the cell ran against ("": the mock's own flags)
    "server_capacity_rps",  # the server side's bound: W/S, concurrency/S, or a capacity upstream's curve
    "upstream_rps",  # under a capacity upstream: the most the cell can get from it (else empty)
    "burst",  # an open-loop burst (a short, high rate), not a steady load
    "engine",
    "jobs_per_worker",
    "rss_api_mb",
    "rss_worker_mb",
    "rss_baseline_mb",
    "rss_workers_total_mb",
    "rss_baseline_total_mb",
    "worker_processes",
)
# summary column → the server.csv column it is the window's mean of
MEMORY_COLUMNS = {
    "rss_api_mb": "rss_api_process_mb",
    "rss_worker_mb": "rss_worker_process_mb",
    "rss_baseline_mb": "rss_baseline_process_mb",
    "rss_workers_total_mb": "rss_workers_mb",
    "rss_baseline_total_mb": "rss_baseline_mb",
    "worker_processes": "processes_workers",
}
QUEUED_MEMORY = frozenset({"rss_api_mb", "rss_worker_mb", "rss_workers_total_mb", "worker_processes"})


class SloError(ValueError):
    """An --slo that cannot be parsed; the message says what is expected."""


@dataclass(frozen=True)
class Slo:
    """Service-level objectives per request: end-to-end (None: the deadline) and, queued only, submit."""

    e2e_ms: float | None = None
    submit_ms: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Slo:
        """`e2e=2s,submit=200ms` (either part may be left out)."""
        values: dict[str, float] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in ("e2e", "submit"):
                raise SloError(f"--slo takes e2e=DURATION[,submit=DURATION], got '{text}'")
            try:
                values[key] = parse_duration(value) * 1000
            except ValueError as exc:
                raise SloError(f"--slo {key}: {exc}") from None
        return cls(values.get("e2e"), values.get("submit"))

    def e2e_for(self, cell: Cell) -> float:
        deadline_ms = cell.deadline_s * 1000
        return deadline_ms if self.e2e_ms is None else min(self.e2e_ms, deadline_ms)

    def as_dict(self) -> dict[str, float | None]:
        return {"e2e_ms": self.e2e_ms, "submit_ms": self.submit_ms}


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


def queue_engine(cell: Cell) -> tuple[str | None, int | None]:
    """(engine, jobs in flight per worker process) of a queued cell; (None, None) for an inline one."""
    if cell.architecture != "queued":
        return None, None
    return cell.engine, (cell.concurrency or 1) if cell.engine == "saq" else 1


def ideal_rps(cell: Cell, offered_rps: float | None = None) -> tuple[float | None, str]:
    """(requests per second, "server" or "client": which bound is the lower); (None, "unknown") when the
    upstream's latency is not known (an external target without a mock).

    S = the configured upstream latency alone: no measured figure goes into it, so a slower job path shows
    as a lower share of ideal instead of moving the ideal (loadtests/sweep/calibrate.py measures the job
    path's overhead, shown beside it). Server: W workers × C jobs per worker / S for the queued system (RQ:
    C = 1), concurrency / S for the baseline (asyncio: unbounded, only the upstream limits it). Client:
    closed loop, users / S (each user has one request in flight, each lasts at least S); open loop, the
    arrivals actually offered in the window (`offered_rps`; the nominal rate when not given).

    Under an upstream with a capacity knee, W / S is no bound a pool reaches: the server-side bound is the
    upstream's curve at the requests the cell can have in flight (`cell.upstream_rps`, computed by the
    harness from mocks.capacity's model; "upstream"), against the offered arrivals in open loop.
    """
    if cell.upstream_rps is not None:
        offered = offered_rps if offered_rps is not None else cell.rate
        if cell.load == "open" and offered is not None and offered < cell.upstream_rps:
            return offered, "client"
        return cell.upstream_rps, "upstream"
    if not cell.service_time_ms:
        return None, "unknown"
    service_s = cell.service_time_ms / 1000
    if cell.load == "closed":
        client = (cell.users or 0) / service_s
    else:
        client = offered_rps if offered_rps is not None else cell.rate or 0.0
    if cell.architecture == "queued":
        server = (cell.servers or 0) / service_s
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


def slo_met(samples: Sequence[Sample], cell: Cell, slo: Slo) -> int:
    """End-to-end requests answered ok within the SLO (and, queued, submitted within the submit SLO)."""
    e2e_limit = slo.e2e_for(cell)
    late_submits: set[str] = set()
    if slo.submit_ms is not None and cell.architecture == "queued":
        late_submits = {
            s.request
            for s in samples
            if s.kind == "submit" and (s.outcome != "ok" or s.latency_ms > slo.submit_ms)
        }
    return sum(
        1
        for s in samples
        if s.kind == "e2e"
        and s.outcome == "ok"
        and s.latency_ms <= e2e_limit
        and s.request not in late_submits
    )


def memory_figures(cell: Cell, server: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The window's mean of each memory column of server.csv for the roles that serve the cell (queued:
    the API and the workers; inline: the baseline; the stack keeps the others running idle, their memory
    stays in server.csv); None where none was sampled, never 0."""
    queued = cell.architecture == "queued"
    means = {
        column: _mean(row.get(source) for row in server) if (column in QUEUED_MEMORY) == queued else None
        for column, source in MEMORY_COLUMNS.items()
    }
    return {column: _round(value, 1) for column, value in means.items()}


def cpu_limit(cell: Cell, server: Sequence[Mapping[str, Any]], cores: int) -> dict[str, Any]:
    """The machine's mean CPU, the busiest single-process server and, when either is past its bound, why
    the cell measured the testbed ("" when neither is)."""
    roles = dict(SINGLE_PROCESS_ROLES)
    if cell.architecture == "sync" and (cell.processes or 1) == 1:
        roles["baseline"] = "cpu_baseline"
    means = {role: _mean(row.get(column) for row in server) for role, column in roles.items()}
    known = {role: value for role, value in means.items() if value is not None}
    busiest = max(known, key=lambda role: known[role]) if known else None
    machine = _mean(row.get("cpu_machine") for row in server)
    reasons = []
    if busiest is not None and known[busiest] >= SINGLE_PROCESS_BUSY_PCT:
        reasons.append(f"{busiest} process at {known[busiest]:.0f} % of a core")
    if machine is not None and machine >= MACHINE_BUSY_SHARE * 100 * cores:
        reasons.append(f"machine at {machine:.0f} % of {100 * cores} %")
    return {
        "cpu_machine_pct": _round(machine, 1),
        "busiest_process": busiest,
        "busiest_process_pct": _round(known[busiest], 1) if busiest is not None else None,
        "testbed_limited": "; ".join(reasons),
    }


def summarize(
    cell: Cell,
    samples: Sequence[Sample],
    server_rows: Sequence[Mapping[str, float]] = (),
    late_arrivals: int = 0,
    completed_ok: int | None = None,
    slo: Slo | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """`samples`: the cell's requests started in the measured window; `server_rows`: sampler rows.

    `completed_ok`: ok responses that ARRIVED within the window (the sweep counts them over all requests,
    warm-up included). Throughput is that count / duration: a server's rate of finishing work, free of the
    boundary error of counting starts (up to one request per closed-loop user). Without it: ok starts.
    """
    slo = slo or Slo()
    e2e = [s for s in samples if s.kind == "e2e"]
    latencies = [counted_latency_ms(s, cell.deadline_s) for s in e2e]
    ok = sum(s.outcome == "ok" for s in e2e)
    timeouts = sum(s.outcome == "timeout" for s in e2e)
    errors = sum(s.outcome == "error" for s in e2e)
    submits = [counted_latency_ms(s, cell.deadline_s) for s in samples if s.kind == "submit"]
    probes = [s for s in samples if s.kind == "probe"]
    offered = len(e2e) / cell.duration_s
    ideal, bound = ideal_rps(cell, offered if cell.load == "open" else None)
    throughput = (ok if completed_ok is None else completed_ok) / cell.duration_s
    server = in_window(server_rows, cell)
    generator_cpu = _mean(row.get("cpu_generator") for row in server)
    depths = [row["queue_depth"] for row in server if row.get("queue_depth") is not None]
    ok_e2e = [s for s in e2e if s.outcome == "ok"]
    met = slo_met(samples, cell, slo)
    return {
        "cell_id": cell.cell_id,
        "cell": cell.cell or cell.cell_id,
        "trial": cell.trial,
        "seed": cell.seed,
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
        "offered_rps": round(offered, 3),
        "throughput_rps": round(throughput, 3),
        "ideal_rps": _round(ideal),
        "ideal_bound": bound,
        "throughput_ratio": round(throughput / ideal, 4) if ideal else None,
        "service_time_ms": cell.service_time_ms,
        "overhead_ms": cell.overhead_ms,
        "deadline_s": cell.deadline_s,
        "duration_s": cell.duration_s,
        "warmup_s": cell.warmup_s,
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
        "slo_e2e_ms": round(slo.e2e_for(cell), 3),
        "slo_submit_ms": slo.submit_ms if cell.architecture == "queued" else None,
        "slo_ok": met,
        "slo_attainment": round(met / len(e2e), 4) if e2e else None,
        "goodput_rps": round(met / cell.duration_s, 3),
        **cpu_limit(cell, server, cores or os.cpu_count() or 1),
        "upstream": cell.upstream,
        "server_capacity_rps": cell.server_capacity_rps,
        "upstream_rps": cell.upstream_rps,
        "burst": cell.burst,
        **dict(zip(("engine", "jobs_per_worker"), queue_engine(cell), strict=True)),
        **memory_figures(cell, server),
    }


def write_summary(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        out.writeheader()
        for row in rows:
            out.writerow({key: "" if value is None else value for key, value in row.items()})
