"""What became of the job each SIGKILLed worker held: kill → retried → started again (kills.csv).

A kill is only noted when it happens (its time and the killed pids: the kill must stay instant). The watch's
thread then looks up the RQ workers of those pids in Valkey (their hashes outlive them) and the jobs in their
execution index are the jobs they held (RQ adds an execution there before the job starts and removes it
when the job ends, and a dead worker changes nothing). It then reads each such job every POLL_S: `retried` is
the `enqueued_at` RQ wrote when its cleanup found the job abandoned and put it back in the queue (exact, from
Valkey; for a dead-lettered job, when it was first seen failed, ± POLL_S), `restarted` the `started_at` that
another worker wrote when it took the job up (exact).
"""

from __future__ import annotations

import csv
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.utils import as_text, parse_composite_key, utcparse
from rq.worker import BaseWorker

POLL_S = 0.25
KILLS_COLUMNS = ("kill_t", "worker", "job_id", "retried_after_s", "restarted_after_s", "outcome")
ENDED_WITHOUT_RESTART = frozenset({JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value})


@dataclass
class KilledJob:
    kill_t: float  # scenario time of the SIGKILL
    killed_at: datetime  # the same instant, wall clock (UTC), to compare with RQ's timestamps
    worker: str  # the stack's name of the killed process
    rq_worker: str
    job_id: str  # "" when the killed worker held no job
    retried_after_s: float | None = None
    restarted_after_s: float | None = None
    outcome: str = "pending"  # idle | restarted | dead_lettered | pending (not yet started again)

    def row(self) -> dict[str, Any]:
        return {
            "kill_t": round(self.kill_t, 3),
            "worker": self.worker,
            "job_id": self.job_id,
            "retried_after_s": _rounded(self.retried_after_s),
            "restarted_after_s": _rounded(self.restarted_after_s),
            "outcome": self.outcome,
        }


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(value, 3)


@dataclass(frozen=True)
class Kill:
    kill_t: float
    killed_at: datetime
    worker: str
    pids: tuple[int, ...]


class KillWatch:
    """Follows the jobs of killed workers until another worker starts them (a thread: start/stop)."""

    def __init__(self, connection: Redis, queue_name: str, clock: Callable[[], float]) -> None:
        self.connection = connection
        self.queue = Queue(queue_name, connection=connection)
        self.clock = clock
        self.jobs: list[KilledJob] = []
        self._kills: list[Kill] = []  # noted, not yet looked up
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-kills", daemon=True)

    def killed(self, worker: str, pids: Sequence[int]) -> None:
        """Call right after SIGKILLing the processes `pids` (the stack's worker `worker`)."""
        kill = Kill(self.clock(), datetime.now(UTC), worker, tuple(pids))
        with self._lock:
            self._kills.append(kill)

    def _look_up(self) -> None:
        """The jobs the noted kills' RQ workers held; a kill stays noted while the broker is down."""
        with self._lock:
            kills, self._kills = self._kills, []
        if not kills:
            return
        found: list[KilledJob] = []
        try:
            rq_workers = Worker.all(connection=self.connection, queue=self.queue)
            for kill in kills:
                held = [
                    KilledJob(kill.kill_t, kill.killed_at, kill.worker, rq_worker.name, job_id)
                    for rq_worker in rq_workers
                    if rq_worker.pid in kill.pids
                    for job_id in self._executions(rq_worker)
                ]
                found += held or [KilledJob(kill.kill_t, kill.killed_at, kill.worker, "", "", outcome="idle")]
        except RedisError:
            with self._lock:
                self._kills = kills + self._kills
            return
        with self._lock:
            self.jobs += found

    def _executions(self, rq_worker: BaseWorker) -> list[str]:
        members = self.connection.smembers(rq_worker.executions_key)
        return sorted({parse_composite_key(as_text(m))[0] for m in members})

    def start(self) -> KillWatch:
        self._thread.start()
        return self

    def stop(self) -> list[KilledJob]:
        """Stop following (after the drain): a job still `pending` then was never started again."""
        self._stop.set()
        self._thread.join()
        self.update()
        with self._lock:
            return list(self.jobs)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.update()

    def update(self) -> None:
        self._look_up()
        with self._lock:
            pending = [job for job in self.jobs if job.outcome == "pending"]
        if not pending:
            return
        try:
            pipe = self.connection.pipeline(transaction=False)
            for job in pending:
                pipe.hmget(Job.key_for(job.job_id), "status", "worker_name", "enqueued_at", "started_at")
            replies = pipe.execute()
        except RedisError:
            return
        seen_at = datetime.now(UTC)
        with self._lock:
            for job, reply in zip(pending, replies, strict=True):
                state, worker_name, enqueued, started = (as_text(value) if value else None for value in reply)
                self._follow(job, state, worker_name, enqueued, started, seen_at)

    @staticmethod
    def _follow(
        job: KilledJob,
        state: str | None,
        worker_name: str | None,
        enqueued: str | None,
        started: str | None,
        seen_at: datetime,
    ) -> None:
        enqueued_at = utcparse(enqueued) if enqueued else None
        if job.retried_after_s is None and enqueued_at is not None and enqueued_at > job.killed_at:
            job.retried_after_s = (enqueued_at - job.killed_at).total_seconds()
        if state in ENDED_WITHOUT_RESTART and job.retried_after_s is None:
            job.retried_after_s = (seen_at - job.killed_at).total_seconds()
        started_at = utcparse(started) if started else None
        by_other = worker_name is not None and worker_name != job.rq_worker
        if by_other and started_at is not None and started_at > job.killed_at:
            job.restarted_after_s = (started_at - job.killed_at).total_seconds()
            job.outcome = "restarted"
        elif state in ENDED_WITHOUT_RESTART:
            job.outcome = "dead_lettered"


def kill_to_restart(jobs: Sequence[KilledJob]) -> dict[str, Any] | None:
    """outcome.json's summary: kills, jobs held, SIGKILL → retried (back in the queue or dead-lettered) and
    SIGKILL → restarted (taken up by another worker), in seconds."""
    if not jobs:
        return None
    held = [job for job in jobs if job.job_id]
    restarts = sorted(job.restarted_after_s for job in held if job.restarted_after_s is not None)
    retries = sorted(job.retried_after_s for job in held if job.retried_after_s is not None)
    return {
        "kills": len({(job.kill_t, job.worker) for job in jobs}),
        "jobs": len(held),
        "restarted": len(restarts),
        "dead_lettered": sum(1 for job in held if job.outcome == "dead_lettered"),
        "pending": sum(1 for job in held if job.outcome == "pending"),
        "median_s": round(statistics.median(restarts), 2) if restarts else None,
        "min_s": round(restarts[0], 2) if restarts else None,
        "max_s": round(restarts[-1], 2) if restarts else None,
        "retry_median_s": round(statistics.median(retries), 2) if retries else None,  # back in the queue
        "retry_max_s": round(retries[-1], 2) if retries else None,
    }


def write_kills(path: Path, jobs: Sequence[KilledJob]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=KILLS_COLUMNS)
        out.writeheader()
        for job in jobs:
            out.writerow(job.row())
