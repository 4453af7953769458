"""How a fault run reads the jobs of its queue engine (RQ or SAQ): read-only, in batches, from threads.

The timeline (loadtests/faults/timeline.py) asks which accepted jobs have ended, the audit
(loadtests/faults/audit.py) what became of each one, the kill watch (loadtests/faults/kills.py) which jobs a
SIGKILLed worker held and when they were put back in the queue and taken up again. Each engine answers from
its own reading of a job (RQ's `Job`; SAQ's `Job` through system/engines/saq/state.py) and maps its states
onto the contract's as the API does (system/engines/rq.py, system/engines/saq/api.py). Every method raises
redis.exceptions.RedisError when the broker cannot be read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from redis import Redis
from rq import Queue, Worker
from rq.job import Job as RqJob
from rq.job import JobStatus
from rq.results import Result
from rq.utils import as_text, parse_composite_key, utcparse
from saq.job import UNSUCCESSFUL_TERMINAL_STATUSES
from saq.job import Job as SaqJob
from saq.job import Status as SaqStatus

from system.engines.protocol import PublicStatus
from system.engines.rq import PUBLIC_STATUS as RQ_PUBLIC_STATUS
from system.engines.saq.api import PUBLIC_STATUS as SAQ_PUBLIC_STATUS
from system.engines.saq.api import readable_error
from system.engines.saq.state import active_job_keys, registered_workers, stored_jobs
from system.retry_policy import ERROR_META_KEY, failed_attempts

RQ_STATUS_BY_VALUE: dict[str, PublicStatus] = {s.value: status for s, status in RQ_PUBLIC_STATUS.items()}
RQ_DEAD_VALUES = frozenset(s.value for s in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED))


@dataclass(frozen=True)
class StoredJob:
    """A job as the audit sees it."""

    state: str  # the engine's own status: queued, scheduled, started, active, aborting, …
    status: PublicStatus  # the contract's: queued | started | finished | failed
    attempts: int  # attempts made (an ended job's last one included)
    error: str  # the failure on record (one line), "" if none


@dataclass(frozen=True)
class JobProgress:
    """Where a killed worker's job stands (times in UTC; None: not recorded by the engine)."""

    dead: bool  # failed for good: dead-lettered
    worker: str | None  # the engine's name of the worker that took it up last
    requeued_at: datetime | None  # when it was put back in the queue
    started_at: datetime | None  # when its current or last attempt started
    ended_at: datetime | None  # when it was dead-lettered


class EngineJobs(Protocol):
    engine: str

    def statuses(self, job_ids: Sequence[str]) -> list[PublicStatus | None]:
        """The contract's status of each job; None for a job not in Valkey (or without a status)."""

    def stored(self, job_ids: Sequence[str]) -> list[StoredJob | None]: ...

    def remember_workers(self) -> None:
        """Note which worker processes are registered (called often: a killed worker's registration may
        expire before its jobs are looked up)."""

    def held_by(self, pids: Collection[int]) -> list[tuple[str, str]]:
        """(engine's worker name, job id) of every job the workers of processes `pids` had in hand."""

    def progress(self, job_ids: Sequence[str]) -> list[JobProgress | None]: ...


def engine_jobs(engine: str, connection: Redis, queue_name: str) -> EngineJobs:
    return SaqJobs(connection, queue_name) if engine == "saq" else RqJobs(connection, queue_name)


# ---- RQ ---------------------------------------------------------------------------------------------------


def rq_failure_reason(job: RqJob) -> str:
    """The worker's retry policy's `last_error` (system/retry_policy.py), else the last line of RQ's failure
    result; "" if neither says anything."""
    recorded = job.meta.get(ERROR_META_KEY)
    if recorded:
        return str(recorded)
    result = Result.fetch_latest(job, serializer=job.serializer)
    trace = (result.exc_string or "") if result is not None else ""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class RqJobs:
    """Plain HGET/HMGET of job hashes where a status or a few fields do; never a registry's `count`, whose
    cleanup would itself handle abandoned jobs (without the workers' exception handlers)."""

    engine = "rq"

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue = Queue(queue_name, connection=connection)

    def statuses(self, job_ids: Sequence[str]) -> list[PublicStatus | None]:
        pipe = self.connection.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(RqJob.key_for(job_id), "status")
        return [RQ_STATUS_BY_VALUE.get(raw.decode()) if raw else None for raw in pipe.execute()]

    def stored(self, job_ids: Sequence[str]) -> list[StoredJob | None]:
        jobs = RqJob.fetch_many(list(job_ids), connection=self.connection)
        return [self._stored(job) if job is not None else None for job in jobs]

    @staticmethod
    def _stored(job: RqJob) -> StoredJob:
        state = job.get_status(refresh=False)
        status = RQ_PUBLIC_STATUS.get(state, "queued") if state else "queued"
        failed_before = failed_attempts(job) or 0
        if status == "finished":
            attempts = failed_before + 1
        elif status == "failed":
            attempts = max(1, failed_before)
        else:
            attempts = failed_before
        error = rq_failure_reason(job) if status == "failed" else ""
        return StoredJob(state.value if state else "unknown", status, attempts, error)

    def remember_workers(self) -> None:
        """Nothing to do: an RQ worker's hash outlives its process."""

    def held_by(self, pids: Collection[int]) -> list[tuple[str, str]]:
        """RQ adds an execution to its worker's index before the job starts and removes it when the job
        ends; a dead worker changes nothing."""
        held = []
        for worker in Worker.all(connection=self.connection, queue=self.queue):
            if worker.pid in pids:
                members = self.connection.smembers(worker.executions_key)
                job_ids = sorted({parse_composite_key(as_text(m))[0] for m in members})
                held += [(worker.name, job_id) for job_id in job_ids]
        return held

    def progress(self, job_ids: Sequence[str]) -> list[JobProgress | None]:
        """`requeued_at`: the `enqueued_at` RQ writes when its cleanup puts an abandoned job back in the
        queue; RQ keeps no time of a dead-lettering (None)."""
        pipe = self.connection.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(RqJob.key_for(job_id), "status", "worker_name", "enqueued_at", "started_at")
        found: list[JobProgress | None] = []
        for reply in pipe.execute():
            state, worker, enqueued, started = (as_text(value) if value else None for value in reply)
            if state is None:
                found.append(None)
                continue
            found.append(
                JobProgress(
                    dead=state in RQ_DEAD_VALUES,
                    worker=worker,
                    requeued_at=utcparse(enqueued) if enqueued else None,
                    started_at=utcparse(started) if started else None,
                    ended_at=None,
                )
            )
        return found


# ---- SAQ --------------------------------------------------------------------------------------------------


def _from_ms(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


class SaqJobs:
    """SAQ's jobs by MGET (system/engines/saq/state.py); its workers by their worker info, whose pid
    (system/engines/saq/worker.py's metadata) ties a killed process to the `worker_id` SAQ writes on each
    job it takes up."""

    engine = "saq"

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.worker_ids: dict[int, str] = {}  # pid -> SAQ worker id, of every worker seen registered

    def _jobs(self, job_ids: Sequence[str]) -> list[SaqJob | None]:
        return stored_jobs(self.connection, self.queue_name, job_ids)

    def statuses(self, job_ids: Sequence[str]) -> list[PublicStatus | None]:
        return [SAQ_PUBLIC_STATUS[job.status] if job else None for job in self._jobs(job_ids)]

    def stored(self, job_ids: Sequence[str]) -> list[StoredJob | None]:
        return [
            StoredJob(
                job.status.value,
                SAQ_PUBLIC_STATUS[job.status],
                job.attempts,
                readable_error(job) if job.error and job.status in UNSUCCESSFUL_TERMINAL_STATUSES else "",
            )
            if job is not None
            else None
            for job in self._jobs(job_ids)
        ]

    def remember_workers(self) -> None:
        for worker in registered_workers(self.connection, self.queue_name):
            if worker.pid is not None:
                self.worker_ids[worker.pid] = worker.worker_id

    def held_by(self, pids: Collection[int]) -> list[tuple[str, str]]:
        """The jobs of SAQ's active list that the killed workers took up (a job dequeued but not yet
        marked as taken up carries no worker yet: the sweep retries it, but it is not listed here)."""
        self.remember_workers()
        killed = {self.worker_ids[pid] for pid in pids if pid in self.worker_ids}
        if not killed:
            return []
        keys = active_job_keys(self.connection, self.queue_name)
        return sorted(
            (job.worker_id, key)
            for key, job in zip(keys, self._jobs(keys), strict=True)
            if job is not None and job.worker_id in killed and job.status == SaqStatus.ACTIVE
        )

    def progress(self, job_ids: Sequence[str]) -> list[JobProgress | None]:
        """`requeued_at`: the `touched` SAQ's retry writes (the sweep's, for a dead worker's job), readable
        while the job waits in the queue (a new attempt overwrites it); `ended_at`: when it was failed."""
        found: list[JobProgress | None] = []
        for job in self._jobs(job_ids):
            if job is None:
                found.append(None)
                continue
            dead = job.status in UNSUCCESSFUL_TERMINAL_STATUSES
            waiting = job.status == SaqStatus.QUEUED and not job.started
            found.append(
                JobProgress(
                    dead=dead,
                    worker=job.worker_id,
                    requeued_at=_from_ms(job.touched) if waiting else None,
                    started_at=_from_ms(job.started),
                    ended_at=_from_ms(job.completed) if dead else None,
                )
            )
        return found
