"""The SAQ job of the queued system: the RAG pipeline's async path (`Pipeline.arun`) for one question.

Many run at once in one worker process (SAQ's `concurrency`), on the process's cached pipeline (one index,
one async HTTP pool). While the pipeline runs, the job renews its heartbeat every HEARTBEAT_INTERVAL_S
(SAQ's `job.update()`; SAQ sends none by itself), so that the sweep of a live worker can tell a dead
worker's jobs apart (system/engines/saq/queue.py). The beat stops before the job returns: it can never
overwrite the job's end. Errors are not caught, only classified (system/retry_policy.py's decision, the same
for both engines): a permanent one uses up the job's retries, so SAQ dead-letters it at once; a transient
one is left to SAQ's retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from saq.job import Job

from system.engines.saq.queue import HEARTBEAT_INTERVAL_S
from system.logs import job_context, log_answered
from system.rag.pipeline import get_pipeline
from system.retry_policy import is_transient

log = logging.getLogger(__name__)

RESULT_TTL_KEY = "result_ttl_s"  # in the worker's context: the ttl a finished job keeps (RESULT_TTL_S)


async def process_query(ctx: dict[str, Any], *, query: str, top_k: int = 4) -> dict[str, Any]:
    job: Job = ctx["job"]
    with job_context(job.key):
        async with heartbeat(job):
            try:
                result = await get_pipeline().arun(query, top_k)
            except Exception as exc:
                if not is_transient(exc):
                    job.retries = job.attempts  # no attempt left: SAQ fails it now (the dead-letter queue)
                raise
        log_answered(log, result)
    job.ttl = int(ctx.get(RESULT_TTL_KEY, job.ttl))  # SAQ stores the finished job with this ttl
    return result.model_dump()


@contextlib.asynccontextmanager
async def heartbeat(job: Job, interval_s: float = HEARTBEAT_INTERVAL_S) -> AsyncIterator[None]:
    """Renew `job.touched` every `interval_s` while the block runs; stopped (and awaited) when it ends."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job.update()
            except RedisError as exc:  # the next beat tries again; the job lives HEARTBEAT_TTL_S without one
                log.warning("heartbeat failed: %s", exc)

    task = asyncio.create_task(beat(), name=f"heartbeat-{job.key}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
