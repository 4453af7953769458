"""The RQ engine on the API's side: system/broker.py's AsyncBroker behind the engine protocol
(system/engines/protocol.py), RQ's job states mapped onto the contract's, and RQ's registries read for
`/metrics`. The RQ workers are system/worker.py, their job system/jobs.py, their retries
system/retry_policy.py, their dead-letter queue system/dlq.py.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.job import JobStatus
from rq.worker import WorkerStatus

from system.broker import AsyncBroker, JobSnapshot
from system.engines.broker_state import BrokerState
from system.engines.protocol import JobView, PublicStatus, one_line_error
from system.retry_policy import ERROR_META_KEY
from system.settings import SystemSettings

# RQ has more states than the contract: a job waiting for its retry (scheduled) is still queued for the
# client, a stopped or canceled one will never finish.
PUBLIC_STATUS: dict[JobStatus, PublicStatus] = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "failed",
}


class RqApiEngine:
    name = "rq"

    def __init__(self, settings: SystemSettings) -> None:
        self.broker = AsyncBroker(settings)
        self.commands = self.broker.commands
        self.sync = self.broker.sync

    async def ping(self) -> None:
        await self.broker.ping()

    async def queue_depth(self) -> int:
        return await self.broker.queue_depth()

    async def enqueue(self, job_id: str, query: str, top_k: int) -> None:
        await self.broker.enqueue(job_id, query, top_k)

    async def confirm_on_disk(self) -> None:
        await self.broker.confirm_on_disk()

    async def job(self, job_id: str) -> JobView | None:
        snapshot = await self.broker.snapshot(job_id)
        return job_view(snapshot) if snapshot is not None else None

    async def wait_for_end(self, view: JobView, timeout_s: float) -> JobView:
        if not await self.broker.wait_for_end(view.job_id, view.cursor, timeout_s):
            return view
        return await self.job(view.job_id) or view

    async def aclose(self) -> None:
        await self.broker.aclose()


def job_view(snapshot: JobSnapshot) -> JobView:
    job, result = snapshot.job, snapshot.result
    status = PUBLIC_STATUS.get(job.get_status(refresh=False), "queued")
    value = result.return_value if result is not None and status == "finished" else None
    return JobView(
        job_id=job.id,
        status=status,
        result=value,
        error=readable_error(snapshot) if status == "failed" else None,
        timings_ms=job_timings(snapshot, value),
        cursor=snapshot.result_stream_id,
    )


def job_timings(snapshot: JobSnapshot, value: dict[str, Any] | None) -> dict[str, float]:
    """The pipeline's stage timings plus `queue_wait` (enqueued → started) and `run` (started → ended)."""
    job, result = snapshot.job, snapshot.result
    timings: dict[str, float] = dict(value.get("timings_ms", {})) if value else {}
    started = job.started_at or (result.execution_started_at if result else None)
    ended = job.ended_at or (result.execution_ended_at if result else None)
    if job.enqueued_at is not None and started is not None:
        timings["queue_wait"] = (started - job.enqueued_at).total_seconds() * 1000
    if started is not None and ended is not None:
        timings["run"] = (ended - started).total_seconds() * 1000
    return timings


def readable_error(snapshot: JobSnapshot) -> str:
    """One line: `ErrorClass: message`, never the traceback (that stays in `ragload dlq show ID`)."""
    recorded = snapshot.job.meta.get(ERROR_META_KEY)  # written by the worker's retry policy
    if recorded:
        return str(recorded)
    trace = (snapshot.result.exc_string if snapshot.result else None) or ""
    return one_line_error(trace) or f"job {snapshot.job.get_status(refresh=False).value}"


def broker_state(connection: Redis, queue_name: str) -> BrokerState:
    """Queue and registry sizes and worker states, read from Valkey (RedisError when it is down)."""
    queue = Queue(queue_name, connection=connection)
    states = [worker.get_state() for worker in Worker.all(queue=queue)]
    busy = sum(1 for state in states if state == WorkerStatus.BUSY)
    # Read-only counts: a registry's `.count` runs RQ's cleanup, which would fail an abandoned job here,
    # outside the workers' exception handlers (no attempt count, no last_error, no retry metric).
    return BrokerState(
        queue_depth=queue.count,
        started=queue.started_job_registry.get_job_count(cleanup=False),
        scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False),
        failed=queue.failed_job_registry.get_job_count(cleanup=False),
        busy_workers=busy,
        idle_workers=len(states) - busy,
    )
