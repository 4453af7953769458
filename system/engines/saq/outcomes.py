"""What an SAQ worker counts per job attempt: the same series as the RQ workers (system/metrics.py), with
`engine="saq"`.

SAQ has no exception handlers; it has an `after_process` hook, called once an attempt has ended and SAQ has
finished, retried or failed the job: `count_attempt` reads what became of it there. A dead worker's jobs
are ended by another worker's sweep, which calls no hook: `count_swept` is called by the queue
(system/engines/saq/queue.py) when it retries or ends a job with the sweep's error.
"""

from __future__ import annotations

from typing import Any

from saq.job import Job, Status

from system.metrics import error_kind, record_attempt_failed, record_job_finished

ENGINE = "saq"
# SAQ's own failure of an attempt: its job timeout (asyncio.wait_for) raises TimeoutError.
SAQ_ERROR_KINDS: dict[type[BaseException], str] = {TimeoutError: "job_timeout"}
ABANDONED = "abandoned"  # the sweep found the job without heartbeats: its worker died (as RQ's kind)
CANCELLED = "cancelled"  # the worker was stopped and its grace ran out: SAQ re-queues the job


async def count_attempt(ctx: dict[str, Any]) -> None:
    """SAQ's `after_process` hook."""
    job: Job | None = ctx.get("job")
    if job is None:
        return
    exc = ctx.get("exception")
    if job.status == Status.COMPLETE:
        record_job_finished(
            queue_wait_s=(job.started - job.queued) / 1000,
            run_s=(job.completed - job.started) / 1000,
            end_to_end_s=(job.completed - job.queued) / 1000,
            engine=ENGINE,
        )
    elif job.status in (Status.QUEUED, Status.FAILED, Status.ABORTED):
        kind = error_kind(exc, SAQ_ERROR_KINDS) if exc is not None else CANCELLED
        record_attempt_failed(ENGINE, kind, retried=job.status == Status.QUEUED)


def count_swept(retried: bool) -> None:
    record_attempt_failed(ENGINE, ABANDONED, retried=retried)
