"""Prometheus metrics of the queued system: its jobs, its queue and the broker's state.

Two kinds of series:
- **Events**, counted where they happen (API, worker): counters and histograms below. The API, its uvicorn
  processes and the RQ workers write to one PROMETHEUS_MULTIPROC_DIR in the stack, and the API's `/metrics`
  merges the files (system/rag/prometheus.py). The LLM calls' series are the RAG core's, recorded alike by
  both architectures (system/rag/llm_metrics.py).
- **State** read from Valkey at scrape time by `BrokerCollector`: queue depth, registry sizes (the failed
  registry is the dead-letter queue), busy/idle workers, the shared LLM breaker's state. Nothing writes these
  from a worker, so they stay right when a worker dies.

Render with system/rag/prometheus.py's `render_metrics(...)` / `metrics_route(...)`; `count_job_failure` is
an RQ exception handler.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from system.rag.llm_metrics import breaker_state_family, llm_error_kind
from system.rag.prometheus import LATENCY_BUCKETS  # importing it creates a missing PROMETHEUS_MULTIPROC_DIR

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


def error_kind(exc: BaseException) -> str:
    """The kind of a failed job attempt: RQ's own failures, else the RAG core's vocabulary for LLM calls."""
    if isinstance(exc, AbandonedJobError):
        return "abandoned"
    if isinstance(exc, JobTimeoutException):
        return "job_timeout"
    return llm_error_kind(exc)


# ---- recording (called from the API and the job) ---------------------------------------------------------


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


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
