"""`ragload worker --engine saq [--count N] --concurrency C`: SAQ workers, C jobs in flight per process.

One SAQ `Worker` per process runs up to C `process_query` jobs at once on one event loop, on the process's
cached pipeline (one index, one async HTTP pool, the LLM breaker shared through Valkey). With `--count N`
the command starts N such processes and waits for them (the embedded stack and compose run one process per
worker instead, to add, remove and kill them one at a time). SIGTERM/SIGINT: SAQ stops taking jobs and
gives those in hand SHUTDOWN_GRACE_S to finish; what is still running then is re-queued by SAQ.

Timers (system/engines/saq/queue.py says why): the sweep every SWEEP_INTERVAL_S instead of SAQ's 60 s, the
worker info every WORKER_INFO_INTERVAL_S. Each process says in its worker info how many jobs it has in hand
(`in_flight`, read by system/engines/saq/state.py for `/metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
from typing import Any

import anyio.to_thread
from saq import Worker
from saq.types import PartialTimersDict

from system.connections import COMMAND_POOL_SIZE, async_connection, sync_connection
from system.engines.saq.jobs import RESULT_TTL_KEY, process_query
from system.engines.saq.outcomes import count_attempt
from system.engines.saq.queue import (
    DEQUEUE_TIMEOUT_S,
    JOB_FUNCTION,
    SWEEP_INTERVAL_S,
    WORKER_INFO_INTERVAL_S,
    job_queue,
)
from system.engines.saq.state import CONCURRENCY, HOSTNAME, IN_FLIGHT, PID
from system.logs import configure_logging
from system.rag.breaker import configure_breaker
from system.rag.errors import RagError
from system.rag.pipeline import get_pipeline
from system.settings import SystemSettings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10  # as the RQ workers' stop grace in the embedded stack (loadtests/stack/services.py)


def build_worker(settings: SystemSettings, concurrency: int, burst: bool = False) -> Worker[Any]:
    # The worker's BLMOVE blocks DEQUEUE_TIMEOUT_S: its socket must outlast that.
    redis = async_connection(
        settings, max(COMMAND_POOL_SIZE, 2 * concurrency + 8), socket_timeout_s=DEQUEUE_TIMEOUT_S + 5
    )
    queue = job_queue(settings, redis)
    metadata: dict[str, Any] = {
        PID: os.getpid(),
        HOSTNAME: socket.gethostname(),
        CONCURRENCY: concurrency,
        IN_FLIGHT: 0,
    }

    async def startup(ctx: dict[str, Any]) -> None:
        configure_breaker(sync_connection(settings))
        ctx[RESULT_TTL_KEY] = settings.result_ttl_s
        try:
            await anyio.to_thread.run_sync(get_pipeline().check)  # loads the index before the first job
        except RagError as exc:  # the jobs will fail with this error, readable in /job-status
            log.error("pipeline not ready: %s", exc)

    # SAQ sends the metadata with its next worker info. before_process runs before SAQ registers the job's
    # task in `job_task_contexts`, after_process once it has removed it.
    async def before_process(ctx: dict[str, Any]) -> None:
        metadata[IN_FLIGHT] = len(worker.job_task_contexts) + 1

    async def after_process(ctx: dict[str, Any]) -> None:
        await count_attempt(ctx)
        metadata[IN_FLIGHT] = len(worker.job_task_contexts)

    worker: Worker[Any] = Worker(
        queue,
        functions=[(JOB_FUNCTION, process_query)],
        concurrency=concurrency,
        startup=startup,
        before_process=before_process,
        after_process=after_process,
        # schedule and abort: SAQ's defaults (1 s); the schedule timer moves retries whose backoff is over.
        timers=PartialTimersDict(
            sweep=SWEEP_INTERVAL_S, worker_info=WORKER_INFO_INTERVAL_S, schedule=1, abort=1
        ),
        dequeue_timeout=DEQUEUE_TIMEOUT_S,
        burst=burst,  # stops once a dequeue finds the queue empty (retries waiting for their backoff stay)
        shutdown_grace_period_s=SHUTDOWN_GRACE_S,
        metadata=metadata,
    )
    return worker


def run_worker(settings: SystemSettings, concurrency: int, log_level: str, burst: bool = False) -> None:
    """One worker process: runs until SIGTERM/SIGINT (with `burst`: until the queue is empty)."""
    configure_logging("worker", log_level)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # the job's own line has the stage timings
    worker = build_worker(settings, concurrency, burst)
    log.info("SAQ worker: %d jobs at once on queue %s", concurrency, settings.queue_name)
    asyncio.run(worker.start())


def run_workers(
    settings: SystemSettings, count: int, concurrency: int, log_level: str, burst: bool = False
) -> int:
    """`count` worker processes (one: this process); returns once all have exited."""
    if count == 1:
        run_worker(settings, concurrency, log_level, burst)
        return 0
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop or pool crosses
    children = [
        context.Process(
            target=run_worker, args=(settings, concurrency, log_level, burst), name=f"saq-worker-{i}"
        )
        for i in range(count)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return 0 if all(child.exitcode == 0 for child in children) else 1
