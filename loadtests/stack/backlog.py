"""Jobs waiting from before: what the broker holds when a stack starts, and how `--fresh` discards them.

The embedded Valkey keeps its data across runs (the append-only file under `$RAGLOAD_DATA_DIR/valkey`), so
that no accepted job is lost by a stop. The other side of it: the backlog of an earlier load test comes back
with the broker — queued jobs, retries waiting for their interval, jobs whose worker was stopped or killed —
and runs before anything new, and while MAX_QUEUE_DEPTH jobs are queued every submit is refused (429). The
stack reads the backlog before its workers start; `ragload up` says what it found, and `ragload up --fresh`
deletes those jobs with RQ's own calls (the dead-letter queue and the finished jobs' results stay).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.registry import BaseRegistry


@dataclass(frozen=True)
class Backlog:
    queued: int
    scheduled: int  # retries waiting for their interval
    interrupted: int  # started (or taken from the queue) by a worker of an earlier run

    @property
    def total(self) -> int:
        return self.queued + self.scheduled + self.interrupted

    def __str__(self) -> str:
        return (
            f"{self.total:,} job(s): {self.queued:,} queued, {self.scheduled:,} scheduled for a retry, "
            f"{self.interrupted:,} interrupted while running"
        )


def read_backlog(connection: Redis, queue_name: str) -> Backlog:
    """The jobs of `queue_name` that would run (read-only: no registry cleanup runs here)."""
    queue = Queue(queue_name, connection=connection)
    started = queue.started_job_registry.get_job_ids(cleanup=False)
    taken = set(queue.intermediate_queue.get_job_ids()) - set(started)
    return Backlog(
        queued=queue.count,
        scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False),
        interrupted=len(set(started)) + len(taken),
    )


def discard_backlog(connection: Redis, queue_name: str) -> Backlog:
    """Delete every job of `queue_name` that would run; returns what there was. Only with no live worker."""
    queue = Queue(queue_name, connection=connection)
    found = read_backlog(connection, queue_name)
    queue.empty()
    delete_registry_jobs(queue.scheduled_job_registry)
    started = queue.started_job_registry
    for job_id, execution_id in started.get_job_and_execution_ids(cleanup=False):
        job = queue.fetch_job(job_id)
        if job is not None:
            job.delete()
        # What job.delete() leaves: the entry of a job whose data is gone, or that has moved on since.
        started.remove_execution(Execution(execution_id, job_id, connection=connection))
    intermediate = queue.intermediate_queue
    for job_id in intermediate.get_job_ids():
        if (job := queue.fetch_job(job_id)) is not None:
            job.delete()
        intermediate.remove(job_id)
    return found


def delete_registry_jobs(registry: BaseRegistry) -> None:
    """Remove every job of a (not started) registry and delete its data."""
    for job_id in registry.get_job_ids():
        try:
            registry.remove(job_id, delete_job=True)
        except NoSuchJobError:  # its data expired already; the registry entry is gone now
            pass
        except ValueError:  # RQ 3.0: an expired execution of a killed worker; keep the job
            registry.remove(job_id)
