"""The SAQ engine on the API's side (system/engines/protocol.py): enqueue, read a job, wait for its end.

Everything is SAQ's own call on redis.asyncio (SAQ is asyncio throughout): `queue.enqueue` (a Lua script:
the job, its place in the queue), `queue.job`, `queue.count`. The long-poll waits on SAQ's pub/sub job
updates (system/engines/saq/notifications.py says why through a subscription of our own). Durability: the
same WAITAOF confirmation as for RQ (system/durability.py), after SAQ's enqueue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from saq.job import TERMINAL_STATUSES, Job, Status

from system.connections import COMMAND_POOL_SIZE, async_connection, sync_connection
from system.durability import confirm_on_disk
from system.engines.protocol import JobView, PublicStatus, one_line_error
from system.engines.saq.notifications import JobNotifications
from system.engines.saq.queue import JOB_FUNCTION, SWEPT_ERROR, job_options, job_queue
from system.settings import SystemSettings

PUBLIC_STATUS: dict[Status, PublicStatus] = {
    Status.NEW: "queued",
    Status.QUEUED: "queued",  # waiting, or waiting for a retry's backoff
    Status.ACTIVE: "started",
    Status.ABORTING: "started",  # the sweep is taking it from a dead worker: retried or failed next
    Status.COMPLETE: "finished",
    Status.FAILED: "failed",
    Status.ABORTED: "failed",
}


class DuplicateJob(RuntimeError):
    """SAQ refused the job: one with its key exists (never with a fresh uuid4)."""


class SaqApiEngine:
    name = "saq"

    def __init__(self, settings: SystemSettings) -> None:
        self.settings = settings
        self.commands = async_connection(settings, COMMAND_POOL_SIZE)
        self.sync = sync_connection(settings)
        self.queue = job_queue(settings, self.commands)
        self.options = job_options(settings)
        self.notifications = JobNotifications(self.commands, prefix=self.queue.job_id(""))

    async def ping(self) -> None:
        await self.commands.ping()

    async def queue_depth(self) -> int:
        return await self.queue.count("queued")

    async def enqueue(self, job_id: str, query: str, top_k: int) -> None:
        job = await self.queue.enqueue(JOB_FUNCTION, key=job_id, query=query, top_k=top_k, **self.options)
        if job is None:
            raise DuplicateJob(f"a job {job_id} exists already")
        if self.settings.broker_durability == "fsync":
            await self.confirm_on_disk()

    async def confirm_on_disk(self) -> None:
        await confirm_on_disk(self.commands, self.settings.broker_fsync_timeout_ms)

    async def job(self, job_id: str) -> JobView | None:
        job = await self.queue.job(job_id)
        return job_view(job) if job is not None else None

    async def wait_for_end(self, view: JobView, timeout_s: float) -> JobView:
        """Subscribe to the job's updates, THEN read it (an end after the read cannot be missed), then wait
        for an update that says it ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        await self.notifications.ready()
        updates = await self.notifications.subscribe(self.queue.job_id(view.job_id))
        try:
            current = await self.job(view.job_id) or view
            while not current.ended and (remaining := deadline - loop.time()) > 0:
                try:
                    message: dict[str, Any] = await asyncio.wait_for(updates.get(), remaining)
                except TimeoutError:
                    break
                if Status(message["data"].decode()) in TERMINAL_STATUSES:
                    current = await self.job(view.job_id) or current  # ABORTED may yet be retried
            return current
        finally:
            await self.notifications.release(updates)

    async def aclose(self) -> None:
        await self.notifications.close()
        await self.commands.aclose()
        self.sync.close()


def job_view(job: Job) -> JobView:
    status = PUBLIC_STATUS[job.status]
    result = job.result if status == "finished" and isinstance(job.result, dict) else None
    return JobView(
        job_id=job.key,
        status=status,
        result=result,
        error=readable_error(job) if status == "failed" else None,
        timings_ms=job_timings(job, result),
    )


def job_timings(job: Job, result: dict[str, Any] | None) -> dict[str, float]:
    """The pipeline's stage timings plus `queue_wait` (enqueued → started) and `run` (started → ended);
    SAQ keeps its times in whole milliseconds since the epoch (0 = not yet)."""
    timings: dict[str, float] = dict(result.get("timings_ms", {})) if result else {}
    if job.queued and job.started:
        timings["queue_wait"] = float(job.started - job.queued)
    if job.started and job.completed:
        timings["run"] = float(job.completed - job.started)
    return timings


def readable_error(job: Job) -> str:
    """One line: `ErrorClass: message` (SAQ keeps the whole traceback: `ragload dlq --engine saq show ID`)."""
    trace = job.error or ""
    if trace == SWEPT_ERROR:
        return trace
    line = one_line_error(trace)
    if line == "TimeoutError":  # SAQ's job timeout
        return f"JobTimeout: the job ran longer than its timeout ({job.timeout} s)"
    return line or f"job {job.status.value}"
