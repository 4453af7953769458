"""`ragload worker --count N [--burst]`: N RQ workers on the queued system's queue, under RQ's WorkerPool.

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
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError
from rq import SimpleWorker, Worker
from rq.worker import BaseWorker
from rq.worker_pool import WorkerPool

from system.broker import sync_connection
from system.logs import configure_logging
from system.rag.breaker import configure_breaker
from system.rag.errors import RagError
from system.rag.pipeline import get_pipeline
from system.rag.prometheus import serve_metrics
from system.retry_policy import worker_options
from system.settings import SystemSettings, load_settings

log = logging.getLogger(__name__)


def _with_ragload_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Retry policy, DLQ attempt counts, job metrics and abandoned-job timings (system/retry_policy.py),
    unless the caller (e.g. `rq worker` flags) gave its own."""
    for key, value in worker_options().items():
        if not kwargs.get(key):
            kwargs[key] = value
    return kwargs


def warm_up(worker: BaseWorker) -> None:
    """Share the LLM breaker through the broker and load the pipeline before the first job."""
    configure_breaker(worker.connection)
    try:
        get_pipeline().check()
    except RagError as exc:  # the jobs will fail with this error, readable in /job-status
        log.error("pipeline not ready: %s", exc)


class RagWorker(SimpleWorker):
    """The default: jobs run in the worker's process, on a pipeline loaded once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_with_ragload_options(kwargs))

    def work(self, *args: Any, **kwargs: Any) -> bool:
        warm_up(self)
        return bool(super().work(*args, **kwargs))


class RagForkWorker(Worker):
    """RQ's forking Worker with the same options; each work horse builds its own pipeline (for comparison)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_with_ragload_options(kwargs))

    def work(self, *args: Any, **kwargs: Any) -> bool:
        configure_breaker(self.connection)
        return bool(super().work(*args, **kwargs))


WORKER_CLASSES: dict[str, type[BaseWorker]] = {"simple": RagWorker, "fork": RagForkWorker}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=1, help="worker processes (1)")
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
    pool = WorkerPool(
        [settings.queue_name],
        connection=connection,
        num_workers=args.count,
        worker_class=WORKER_CLASSES[args.worker_class],
    )
    log.info("starting %d %s worker(s) on queue %s", args.count, args.worker_class, settings.queue_name)
    pool.start(burst=args.burst, logging_level=args.log_level.upper())
    return 0
