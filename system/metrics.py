"""Prometheus metrics of the queued system: its jobs, its queue and the broker's state.

Every series carries an `engine` label (rq or saq, system/engines/): the names and their meaning are the same
for both engines, so one dashboard and one autoscaling query serve either. Two kinds of series:
- **Events**, counted where they happen (API, worker): counters and histograms below. The API, its uvicorn
  processes and the RQ workers write to one PROMETHEUS_MULTIPROC_DIR in the stack, and the API's `/metrics`
  merges the files (system/rag/prometheus.py). The LLM calls' series are the RAG core's, recorded alike by
  both architectures (system/rag/llm_metrics.py).
- **State** read from Valkey at scrape time by `BrokerCollector` (the engine's reader,
  system/engines/broker_state.py): queue depth, jobs running, waiting for a retry and dead-lettered, busy/idle
  worker processes, the shared LLM breaker's state. Nothing writes these from a worker, so they stay right
  when a worker dies.

Render with system/rag/prometheus.py's `render_metrics(...)` / `metrics_route(...)`; `count_job_failure` is
an RQ exception handler; the SAQ worker counts its attempts in system/engines/saq/outcomes.py.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from system.engines.broker_state import BrokerState, state_reader
from system.rag.llm_metrics import breaker_state_family, llm_error_kind
from system.rag.prometheus import LATENCY_BUCKETS  # importing it creates a missing PROMETHEUS_MULTIPROC_DIR

ENGINE = ["engine"]
JOBS_ACCEPTED = Counter("ragload_jobs_accepted", "Jobs the API accepted (202) and enqueued", ENGINE)
ADMISSION_REJECTIONS = Counter(
    "ragload_admission_rejections",
    "Submissions the API refused, by reason (queue_full, broker_down…)",
    ["engine", "reason"],
)
JOB_OUTCOMES = Counter(
    "ragload_jobs",
    "Job attempts that ended, by outcome (finished, retried, dead_lettered)",
    ["engine", "outcome"],
)
RETRIES = Counter(
    "ragload_retries", "Retries scheduled, by layer (job) and reason", ["engine", "layer", "reason"]
)
QUEUE_WAIT = Histogram(
    "ragload_job_queue_wait_seconds",
    "From enqueue to a worker starting the job",
    ENGINE,
    buckets=LATENCY_BUCKETS,
)
JOB_RUN = Histogram(
    "ragload_job_run_seconds", "Time a worker spent running a finished job", ENGINE, buckets=LATENCY_BUCKETS
)
JOB_END_TO_END = Histogram(
    "ragload_job_end_to_end_seconds",
    "From submission to result stored (retries included)",
    ENGINE,
    buckets=LATENCY_BUCKETS,
)
# RQ's own failures of an attempt (SAQ's are in system/engines/saq/outcomes.py).
RQ_ERROR_KINDS: dict[type[BaseException], str] = {
    AbandonedJobError: "abandoned",
    JobTimeoutException: "job_timeout",
}


def error_kind(exc: BaseException, engine_kinds: Mapping[type[BaseException], str] = RQ_ERROR_KINDS) -> str:
    """The kind of a failed job attempt: the engine's own failures, else the RAG core's vocabulary for LLM
    calls."""
    for cls, kind in engine_kinds.items():
        if isinstance(exc, cls):
            return kind
    return llm_error_kind(exc)


# ---- recording (called from the API and the job) ---------------------------------------------------------


def record_job_finished(
    *, queue_wait_s: float, run_s: float, end_to_end_s: float, engine: str = "rq"
) -> None:
    JOB_OUTCOMES.labels(engine, "finished").inc()
    QUEUE_WAIT.labels(engine).observe(max(0.0, queue_wait_s))
    JOB_RUN.labels(engine).observe(max(0.0, run_s))
    JOB_END_TO_END.labels(engine).observe(max(0.0, end_to_end_s))


def record_attempt_failed(engine: str, kind: str, retried: bool) -> None:
    """A failed attempt: retried (RETRIES by kind) or dead-lettered."""
    if retried:
        JOB_OUTCOMES.labels(engine, "retried").inc()
        RETRIES.labels(engine, "job", kind).inc()
    else:
        JOB_OUTCOMES.labels(engine, "dead_lettered").inc()


def count_job_failure(
    job: Job, exc_type: type[BaseException], exc_value: BaseException, tb: types.TracebackType | None
) -> None:
    """RQ exception handler: count a failed attempt as retried or dead-lettered.

    RQ calls handlers before it decides, so this must come *after* `retry_policy.on_job_failure` (which may
    cancel the remaining retries) in the worker's `exception_handlers`. It also runs for abandoned jobs found
    by the started-registry cleanup (a worker killed mid-job). Returns None: the chain goes on.
    """
    record_attempt_failed("rq", error_kind(exc_value), retried=bool(job.retries_left))


# ---- state read from Valkey at scrape time --------------------------------------------------------------


def broker_snapshot(connection: Redis, queue_name: str, engine: str = "rq") -> BrokerState:
    """The engine's queue, job and worker counts, read from Valkey (RedisError when it is down)."""
    return state_reader(engine)(connection, queue_name)


class BrokerCollector(Collector):
    """Scrape-time gauges from Valkey; `ragload_broker_up 0` (and nothing else) when it cannot be reached."""

    def __init__(
        self,
        connection: Redis,
        queue_name: str,
        breaker_state: Callable[[], str] | None = None,
        engine: str = "rq",
    ) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.breaker_state = breaker_state
        self.engine = engine

    def collect(self) -> Iterable[Any]:
        up = _gauge("ragload_broker_up", "1 if Valkey answered the scrape")
        try:
            snap = broker_snapshot(self.connection, self.queue_name, self.engine)
            breaker = self.breaker_state() if self.breaker_state else None
        except RedisError:
            up.add_metric([self.engine], 0)
            yield up
            return
        up.add_metric([self.engine], 1)
        yield up
        depth = _gauge("ragload_queue_depth", "Jobs waiting in the queue (not those waiting for a retry)")
        depth.add_metric([self.engine], snap.queue_depth)
        yield depth
        registries = _gauge(
            "ragload_registry_jobs",
            "Jobs by registry: started (running), scheduled (waiting for a retry), failed (dead letters)",
            "registry",
        )
        for name, count in (
            ("started", snap.started),
            ("scheduled", snap.scheduled),
            ("failed", snap.failed),
        ):
            registries.add_metric([self.engine, name], count)
        yield registries
        workers = _gauge(
            "ragload_workers",
            "Worker processes registered, by state (busy: at least one job in hand)",
            "state",
        )
        workers.add_metric([self.engine, "busy"], snap.busy_workers)
        workers.add_metric([self.engine, "idle"], snap.idle_workers)
        yield workers
        if breaker is not None:
            yield breaker_state_family(breaker)


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["engine", *labels])
