"""Prometheus metrics of the queued system (and the LLM calls of the baseline).

Two kinds of series:
- **Events**, counted where they happen (API, worker, LLM client): counters and histograms below. The API,
  its uvicorn processes and the RQ workers are separate processes, so in the stack they all write to one
  `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode: the variable must be set, to an empty
  directory, *before* the process imports prometheus_client) and the API's `/metrics` merges the files.
  Without the variable each process counts in memory (fine for tests and a single process).
- **State** read from Valkey at scrape time by `BrokerCollector`: queue depth, registry sizes (the failed
  registry is the dead-letter queue), busy/idle workers, the shared LLM breaker's state. Nothing writes these
  from a worker, so they stay right when a worker dies.

Render with `render_metrics(...)` / `metrics_route(...)`; `count_job_failure` is an RQ exception handler.
"""

from __future__ import annotations

import os
import shutil
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import openai
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus
from starlette.requests import Request
from starlette.responses import Response

from system.rag.errors import RagError, UpstreamTimeout, UpstreamUnavailable


def _ensure_multiprocess_dir() -> None:
    """Create PROMETHEUS_MULTIPROC_DIR if it is set but missing: in multiprocess mode every metric opens its
    file there when it is constructed (below), and a missing directory would crash the import."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)


_ensure_multiprocess_dir()

# 5 ms (a cached embed) … 120 s (a job that waited behind a long backlog); one set for every latency.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
BREAKER_STATES = ("closed", "half-open", "open")

JOBS_ACCEPTED = Counter("ragload_jobs_accepted", "Jobs the API accepted (202) and enqueued")
ADMISSION_REJECTIONS = Counter(
    "ragload_admission_rejections",
    "Submissions the API refused, by reason (queue_full, broker_down…)",
    ["reason"],
)
JOB_OUTCOMES = Counter(
    "ragload_jobs", "Job attempts that ended, by outcome (finished, retried, dead_lettered)", ["outcome"]
)
RETRIES = Counter("ragload_retries", "Retries scheduled, by layer (job) and reason", ["layer", "reason"])
QUEUE_WAIT = Histogram(
    "ragload_job_queue_wait_seconds", "From enqueue to a worker starting the job", buckets=LATENCY_BUCKETS
)
JOB_RUN = Histogram(
    "ragload_job_run_seconds", "Time a worker spent running a finished job", buckets=LATENCY_BUCKETS
)
JOB_END_TO_END = Histogram(
    "ragload_job_end_to_end_seconds",
    "From submission to result stored (retries included)",
    buckets=LATENCY_BUCKETS,
)
LLM_LATENCY = Histogram(
    "ragload_llm_request_seconds", "LLM calls (SDK retries included), by operation", ["operation"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
LLM_ERRORS = Counter("ragload_llm_errors", "Failed LLM calls, by operation and kind", ["operation", "kind"])
BREAKER_TRANSITIONS = Counter("ragload_breaker_transitions", "LLM circuit breaker state changes", ["state"])


def error_kind(exc: BaseException) -> str:
    """A small, fixed vocabulary for failures (metric labels must not explode)."""
    from system.breaker import CircuitOpen  # the breaker module imports this one

    cause = exc.__cause__
    if isinstance(exc, CircuitOpen):
        return "circuit_open"
    if isinstance(exc, AbandonedJobError):
        return "abandoned"
    if isinstance(exc, JobTimeoutException):
        return "job_timeout"
    if isinstance(exc, UpstreamTimeout | openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.RateLimitError) or isinstance(cause, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, UpstreamUnavailable | openai.APIConnectionError | openai.InternalServerError):
        return "unavailable"
    if isinstance(exc, RedisError):
        return "broker"
    if isinstance(exc, RagError | openai.APIStatusError):
        return "rejected"
    return "error"


# ---- recording (called from the API, the job and the LLM client) ----------------------------------------


def record_job_finished(*, queue_wait_s: float, run_s: float, end_to_end_s: float) -> None:
    JOB_OUTCOMES.labels("finished").inc()
    QUEUE_WAIT.observe(max(0.0, queue_wait_s))
    JOB_RUN.observe(max(0.0, run_s))
    JOB_END_TO_END.observe(max(0.0, end_to_end_s))


def count_job_failure(
    job: Job, exc_type: type[BaseException], exc_value: BaseException, tb: types.TracebackType | None
) -> None:
    """RQ exception handler: count a failed attempt as retried or dead-lettered.

    RQ calls handlers before it decides, so this must come *after* `retry_policy.on_job_failure` (which may
    cancel the remaining retries) in the worker's `exception_handlers`. It also runs for abandoned jobs found
    by the started-registry cleanup (a worker killed mid-job). Returns None: the chain goes on.
    """
    kind = error_kind(exc_value)
    if job.retries_left:
        JOB_OUTCOMES.labels("retried").inc()
        RETRIES.labels("job", kind).inc()
    else:
        JOB_OUTCOMES.labels("dead_lettered").inc()


@contextmanager
def observe_llm(operation: str) -> Iterator[None]:
    """Time one LLM call; count it as an error (by kind) if it raises."""
    with LLM_LATENCY.labels(operation).time():
        try:
            yield
        except Exception as exc:
            LLM_ERRORS.labels(operation, error_kind(exc)).inc()
            raise


# ---- state read from Valkey at scrape time --------------------------------------------------------------


@dataclass(frozen=True)
class BrokerSnapshot:
    queue_depth: int
    started: int
    scheduled: int
    failed: int
    busy_workers: int
    idle_workers: int


def broker_snapshot(connection: Redis, queue_name: str) -> BrokerSnapshot:
    """Queue and registry sizes and worker states, read from Valkey (RedisError when it is down)."""
    queue = Queue(queue_name, connection=connection)
    states = [worker.get_state() for worker in Worker.all(queue=queue)]
    busy = sum(1 for state in states if state == WorkerStatus.BUSY)
    # Read-only counts: a registry's `.count` runs RQ's cleanup, which would fail an abandoned job here,
    # outside the workers' exception handlers (no attempt count, no last_error, no retry metric).
    return BrokerSnapshot(
        queue_depth=queue.count,
        started=queue.started_job_registry.get_job_count(cleanup=False),
        scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False),
        failed=queue.failed_job_registry.get_job_count(cleanup=False),
        busy_workers=busy,
        idle_workers=len(states) - busy,
    )


class BrokerCollector(Collector):
    """Scrape-time gauges from Valkey; `ragload_broker_up 0` (and nothing else) when it cannot be reached."""

    def __init__(
        self, connection: Redis, queue_name: str, breaker_state: Callable[[], str] | None = None
    ) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.breaker_state = breaker_state

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("ragload_broker_up", "1 if Valkey answered the scrape")
        try:
            snap = broker_snapshot(self.connection, self.queue_name)
            breaker = self.breaker_state() if self.breaker_state else None
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _gauge("ragload_queue_depth", "Jobs waiting in the queue", snap.queue_depth)
        registries = GaugeMetricFamily(
            "ragload_registry_jobs", "Jobs per RQ registry (failed = dead-letter queue)", labels=["registry"]
        )
        for name, count in (
            ("started", snap.started),
            ("scheduled", snap.scheduled),
            ("failed", snap.failed),
        ):
            registries.add_metric([name], count)
        yield registries
        workers = GaugeMetricFamily("ragload_workers", "RQ workers registered, by state", labels=["state"])
        workers.add_metric(["busy"], snap.busy_workers)
        workers.add_metric(["idle"], snap.idle_workers)
        yield workers
        if breaker is not None:
            yield breaker_state_family(breaker)


def breaker_state_family(state: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "ragload_breaker_state", "LLM circuit breaker: 1 for its current state", labels=["state"]
    )
    for name in BREAKER_STATES:
        family.add_metric([name], 1 if name == state else 0)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


# ---- rendering -------------------------------------------------------------------------------------------


def prepare_multiprocess_dir(path: Path) -> dict[str, str]:
    """Create `path` empty (stale files of a previous run would be counted) and return the env entry
    to give the API and worker processes of one stack. Give the baseline a directory of its own."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(path)}


def build_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The registry to expose: every process's files in multiprocess mode, else this process's metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Delegate(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


class _Delegate(Collector):
    """Exposes another registry's metrics without registering our scrape-time collectors in the global one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


def render_metrics(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition of every metric plus the `extra` scrape-time collectors."""
    return bytes(generate_latest(build_registry(extra)))


def serve_metrics(port: int, addr: str = "0.0.0.0", extra: Iterable[Collector] = ()) -> None:
    """Serve `/metrics` from a background thread (a worker pod in Kubernetes shares no files with the API)."""
    start_http_server(port, addr=addr, registry=build_registry(extra))


def metrics_route(extra: Callable[[], Iterable[Collector]] = tuple) -> Callable[[Request], Any]:
    """A Starlette/FastAPI endpoint for `/metrics` (rendered off the event loop: it reads files and Valkey).

    `app.add_route("/metrics", metrics_route(lambda: [BrokerCollector(redis, queue, breaker_state)]))`.
    """

    async def endpoint(request: Request) -> Response:
        body = await anyio.to_thread.run_sync(render_metrics, extra())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint
