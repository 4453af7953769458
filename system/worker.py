"""`ragload worker --count N [--burst]`: N RQ workers on the queued system's queue, under RQ's WorkerPool.
With `--engine saq` (or QUEUE_ENGINE=saq): N SAQ worker processes, `--concurrency C` jobs each
(system/engines/saq/worker.py).

Worker class: `RagWorker`, an RQ SimpleWorker that runs jobs in its own process. Measured on this machine
(2 cores, RQ 3.0): a no-op job costs ≈ 4 ms on SimpleWorker and ≈ 10 ms on the forking Worker
(docs/architecture.md, "Facts").
With the real `process_query` and the mock at 0 ms (`ragload bench-queue`, part 1, a 7-module index):
SimpleWorker ≈ 6 ms per job (≈ 160-170 jobs/s), forking Worker ≈ 210 ms per job (≈ 4.7 jobs/s), because the
RAG pipeline cannot cross a fork (the edge shard's search threads and the HTTP pools do not survive it), so
every work horse loads the index and opens its connections anew; a bigger index costs more. A SimpleWorker
loads the pipeline once, before its first job (`work()` warms it). What the fork buys — a crashing or
leaking job cannot take the worker down — matters little here: the job is our own code, RQ's job timeout
still applies (SIGALRM in the worker's main thread), and the pool respawns a worker that dies.

WorkerPool forks the N workers, respawns dead ones and, on SIGINT/SIGTERM, asks each for RQ's warm shutdown:
a worker finishes its current job, then exits (RQ ignores the second copy of a signal that arrives within a
second, so Ctrl-C in a terminal, which reaches the whole process group, still means a warm shutdown).

The seed's way works as well: `rq worker --url $REDIS_URL ragload` (forking Worker, pipeline per job), or
`rq worker --url $REDIS_URL --with-scheduler -w system.worker.RagWorker ragload` for this class.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.defaults import DEFAULT_JOB_MONITORING_INTERVAL, DEFAULT_MAINTENANCE_TASK_INTERVAL, DEFAULT_WORKER_TTL
from rq.exceptions import AbandonedJobError
from rq.job import Job, JobStatus
from rq.job_lifecycle import call_exception_handlers
from rq.worker import BaseWorker
from rq.worker_pool import WorkerPool

from system.connections import sync_connection
from system.logs import configure_logging
from system.rag.breaker import configure_breaker
from system.rag.errors import RagError
from system.rag.pipeline import get_pipeline
from system.rag.prometheus import serve_metrics
from system.retry_policy import (
    INTERMEDIATE_STUCK_S,
    JOB_HEARTBEAT_INTERVAL_S,
    JOB_HEARTBEAT_TTL_S,
    MAINTENANCE_LOCK_STALE_S,
    worker_options,
)
from system.settings import SystemSettings, load_settings

log = logging.getLogger(__name__)


# `rq worker` passes RQ's defaults for these even when no flag was given: such a value counts as unset.
RQ_CLI_DEFAULTS = {
    "worker_ttl": DEFAULT_WORKER_TTL,
    "maintenance_interval": DEFAULT_MAINTENANCE_TASK_INTERVAL,
    "job_monitoring_interval": DEFAULT_JOB_MONITORING_INTERVAL,
}
# Deletes a queue's maintenance lock only if it has been held for over MAINTENANCE_LOCK_STALE_S (its TTL,
# set to 899 s by RQ, has run down that far): atomic, so a fresh lock of a live worker is never taken.
RELEASE_STALE_LOCK = """
local ttl = redis.call('TTL', KEYS[1])
if ttl >= 0 and ttl < tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""
RQ_MAINTENANCE_LOCK_S = 899  # rq.Queue.acquire_maintenance_lock


def _with_ragload_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Retry policy, DLQ attempt counts, job metrics and abandoned-job timings (system/retry_policy.py),
    unless the caller (e.g. `rq worker` flags) gave its own."""
    for key, value in worker_options().items():
        if not kwargs.get(key) or kwargs[key] == RQ_CLI_DEFAULTS.get(key):
            kwargs[key] = value
    return kwargs


def release_stale_maintenance_locks(queues: list[Queue]) -> None:
    """Free a queue's maintenance lock left by a worker killed while it cleaned (retry_policy.py)."""
    below_ttl = RQ_MAINTENANCE_LOCK_S - MAINTENANCE_LOCK_STALE_S
    for queue in queues:
        released = queue.connection.eval(RELEASE_STALE_LOCK, 1, queue.registry_cleaning_key, below_ttl)
        if released:
            log.warning("released the maintenance lock of queue %s left by a dead worker", queue.name)


def hand_on_stuck_jobs(worker: BaseWorker, queue: Queue) -> None:
    """Treat a job that has sat in the queue's intermediate list, not started, for INTERMEDIATE_STUCK_S as
    abandoned (retry_policy.py): RQ's own first-seen bookkeeping, its exception handlers and its
    `handle_job_failure` (retry or dead-letter), only sooner than RQ's minute. The LREM decides which worker
    hands a job on when several look at once."""
    intermediate = queue.intermediate_queue
    waiting = intermediate.get_job_ids()
    if not waiting:
        return
    started = set(queue.started_job_registry.get_job_ids(cleanup=False))
    for job_id in waiting:
        if job_id in started or intermediate.set_first_seen(job_id):
            continue
        first_seen = intermediate.get_first_seen(job_id)
        if first_seen is None or (datetime.now(UTC) - first_seen).total_seconds() < INTERMEDIATE_STUCK_S:
            continue
        job = queue.fetch_job(job_id)
        if job is None or job.get_status(refresh=False) != JobStatus.QUEUED:
            continue  # gone, or started and ended (a multi-queue worker leaves those): RQ's cleanup's
        if not queue.connection.lrem(intermediate.key, 1, job_id):
            continue  # another worker took it on
        log.warning("job %s was taken by a worker that died before starting it: handing it on", job_id)
        exc = AbandonedJobError("taken from the queue by a worker that died before starting it")
        call_exception_handlers(worker._exc_handlers, job, AbandonedJobError, exc, None)
        worker.handle_job_failure(job, queue, exc_string=f"AbandonedJobError: {exc}")


class RecoveryTimings:
    """What both worker classes share so that a dead worker's job is retried within seconds
    (system/retry_policy.py): the short heartbeat TTL, the release of a dead worker's maintenance lock and
    the quick hand-on of a job its worker took but never started."""

    queues: list[Queue]

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return JOB_HEARTBEAT_TTL_S

    def clean_registries(self) -> None:
        release_stale_maintenance_locks(self.queues)
        for queue in self.queues:
            hand_on_stuck_jobs(self, queue)  # type: ignore[arg-type]
        super().clean_registries()  # type: ignore[misc]


class JobHeartbeat:
    """Renews a SimpleWorker's running job in the StartedJobRegistry every JOB_HEARTBEAT_INTERVAL_S, from a
    side thread (RQ renews it only between jobs on a SimpleWorker), with RQ's own `maintain_heartbeats`;
    runs RQ's registry maintenance when it is due, so that a worker busy with a long job still finds the
    jobs of dead workers. Stops beating once the job has outlived its timeout (+ the TTL): a job stuck
    where RQ's timeout cannot reach it is then found abandoned like a dead worker's.
    """

    def __init__(self, worker: RagWorker, job: Job) -> None:
        self.worker = worker
        self.job = job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def start(self) -> JobHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(JOB_HEARTBEAT_INTERVAL_S):
            execution = next(
                (e for e in list(self.worker.executions.values()) if e.job_id == self.job.id), None
            )
            if execution is None:  # not registered yet
                continue
            if self._overdue():
                log.warning("job %s outlived its timeout: no more heartbeats", self.job.id)
                return
            try:
                self.worker.maintain_heartbeats(self.job, execution)
                if self.worker.should_run_maintenance_tasks:
                    self.worker.clean_registries()
            except RedisError as exc:  # the next beat tries again; the entry lives JOB_HEARTBEAT_TTL_S
                log.warning("job %s: heartbeat failed: %s", self.job.id, exc)

    def _overdue(self) -> bool:
        started, timeout = self.job.started_at, self.job.timeout
        if started is None or not timeout or timeout < 0:
            return False
        return (datetime.now(UTC) - started).total_seconds() > timeout + JOB_HEARTBEAT_TTL_S


def warm_up(worker: BaseWorker) -> None:
    """Share the LLM breaker through the broker and load the pipeline before the first job."""
    configure_breaker(worker.connection)
    try:
        get_pipeline().check()
    except RagError as exc:  # the jobs will fail with this error, readable in /job-status
        log.error("pipeline not ready: %s", exc)


class RagWorker(RecoveryTimings, SimpleWorker):
    """The default: jobs run in the worker's process, on a pipeline loaded once; a side thread keeps the
    running job's heartbeat fresh (`JobHeartbeat`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_with_ragload_options(kwargs))
        self._job_heartbeat: JobHeartbeat | None = None

    def work(self, *args: Any, **kwargs: Any) -> bool:
        warm_up(self)
        return bool(super().work(*args, **kwargs))

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._job_heartbeat = JobHeartbeat(self, job).start()
        try:
            super().execute_job(job, queue)
        finally:
            self._stop_job_heartbeat()

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """The job has returned or raised: no beat may race RQ's bookkeeping of its end."""
        self._stop_job_heartbeat()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def _stop_job_heartbeat(self) -> None:
        if self._job_heartbeat is not None:
            self._job_heartbeat.stop()
            self._job_heartbeat = None


class RagForkWorker(RecoveryTimings, Worker):
    """RQ's forking Worker with the same options; each work horse builds its own pipeline (for comparison)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_with_ragload_options(kwargs))

    def work(self, *args: Any, **kwargs: Any) -> bool:
        configure_breaker(self.connection)
        return bool(super().work(*args, **kwargs))


WORKER_CLASSES: dict[str, type[BaseWorker]] = {"simple": RagWorker, "fork": RagForkWorker}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=1, help="worker processes (1)")
    parser.add_argument(
        "--engine",
        choices=["rq", "saq"],
        help="queue engine (default: $QUEUE_ENGINE, else rq; system/engines/)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="saq: jobs in flight per process (default: $WORKER_CONCURRENCY, else 64)",
    )
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    parser.add_argument("--queue", help="queue name (default: $QUEUE_NAME, else ragload)")
    parser.add_argument("--redis-url", help="default: $REDIS_URL")
    parser.add_argument(
        "--worker-class", choices=sorted(WORKER_CLASSES), default="simple", help="simple (default) or fork"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def serve_worker_metrics(settings: SystemSettings) -> bool:
    """Serve /metrics on WORKER_METRICS_PORT from a thread of the pool's process; False if it cannot.

    The pool's workers are forked processes, so their series reach this process only through the files of
    prometheus-client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR must be set before the process starts,
    since prometheus-client reads it on import (system/rag/prometheus.py creates the directory if it is
    missing).
    """
    port = settings.worker_metrics_port
    assert port is not None
    if not settings.prometheus_multiproc_dir:
        print(
            "ragload worker: WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR set when the process starts: "
            "the directory where the worker processes write their metrics",
            file=sys.stderr,
        )
        return False
    try:
        serve_metrics(port)
    except OSError as exc:
        print(f"ragload worker: cannot serve metrics on port {port}: {exc}", file=sys.stderr)
        return False
    log.info("worker metrics on :%d/metrics (from %s)", port, settings.prometheus_multiproc_dir)
    return True


def main(args: argparse.Namespace) -> int:
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    if args.queue:
        os.environ["QUEUE_NAME"] = args.queue
    if args.engine:
        os.environ["QUEUE_ENGINE"] = args.engine
    if args.concurrency is not None:
        os.environ["WORKER_CONCURRENCY"] = str(args.concurrency)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"ragload worker: invalid settings (is REDIS_URL set?)\n{exc}", file=sys.stderr)
        return 2
    if args.count < 1:
        print("ragload worker: --count must be >= 1", file=sys.stderr)
        return 2
    configure_logging("worker", args.log_level)
    # The SDK's transport logs every HTTP call at INFO; the job's own line already has the stage timings.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    connection = sync_connection(settings)
    try:
        connection.ping()
    except RedisError as exc:
        print(f"ragload worker: cannot reach the broker at {settings.redis_url}: {exc}", file=sys.stderr)
        return 1
    if settings.worker_metrics_port is not None and not serve_worker_metrics(settings):
        return 2
    if settings.queue_engine == "saq":
        if args.worker_class != "simple":
            print("ragload worker: --worker-class is an RQ option", file=sys.stderr)
            return 2
        from system.engines.saq.worker import run_workers  # an RQ deployment never loads SAQ

        return run_workers(settings, args.count, settings.worker_concurrency, args.log_level, args.burst)
    pool = WorkerPool(
        [settings.queue_name],
        connection=connection,
        num_workers=args.count,
        worker_class=WORKER_CLASSES[args.worker_class],
    )
    log.info("starting %d %s worker(s) on queue %s", args.count, args.worker_class, settings.queue_name)
    pool.start(burst=args.burst, logging_level=args.log_level.upper())
    return 0
