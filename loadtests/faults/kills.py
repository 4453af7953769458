"""What became of the job each SIGKILLed worker held: kill → retried → started again (kills.csv).

A kill is only noted when it happens (its time and the killed pids: the kill must stay instant). The watch's
thread then asks the engine which jobs the workers of those pids held (loadtests/faults/engine_jobs.py: RQ's
execution index of each worker, whose hash outlives it; on SAQ the active jobs that carry the killed
worker's id) and reads each such job every POLL_S: `retried` is when the engine put the job back in the
queue (RQ: the `enqueued_at` its cleanup wrote; SAQ: the `touched` its sweep's retry wrote, readable while
the job waits, so a job taken up again within POLL_S of its retry may show none), or when it was
dead-lettered (SAQ: its `completed`; RQ keeps no such time: when it was first seen failed, ± POLL_S);
`restarted` the start time another worker wrote when it took the job up (exact).
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

from redis.exceptions import RedisError

from loadtests.faults.engine_jobs import EngineJobs, JobProgress
from loadtests.sweep.summary import percentile

POLL_S = 0.25
KILLS_COLUMNS = ("kill_t", "worker", "job_id", "retried_after_s", "restarted_after_s", "outcome")


@dataclass
class KilledJob:
    kill_t: float  # scenario time of the SIGKILL
    killed_at: datetime  # the same instant, wall clock (UTC), to compare with the engine's timestamps
    worker: str  # the stack's name of the killed process
    engine_worker: str  # the engine's name of it (RQ's worker name, SAQ's worker id)
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

    def __init__(self, jobs: EngineJobs, clock: Callable[[], float]) -> None:
        self.engine_jobs = jobs
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
        """The jobs the noted kills' workers held; a kill stays noted while the broker is down."""
        with self._lock:
            kills, self._kills = self._kills, []
        found: list[KilledJob] = []
        try:
            self.engine_jobs.remember_workers()
            for kill in kills:
                held = [
                    KilledJob(kill.kill_t, kill.killed_at, kill.worker, engine_worker, job_id)
                    for engine_worker, job_id in self.engine_jobs.held_by(kill.pids)
                ]
                found += held or [KilledJob(kill.kill_t, kill.killed_at, kill.worker, "", "", outcome="idle")]
        except RedisError:
            with self._lock:
                self._kills = kills + self._kills
            return
        with self._lock:
            self.jobs += found

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
            progress = self.engine_jobs.progress([job.job_id for job in pending])
        except RedisError:
            return
        seen_at = datetime.now(UTC)
        with self._lock:
            for job, now in zip(pending, progress, strict=True):
                if now is not None:
                    self._follow(job, now, seen_at)

    @staticmethod
    def _follow(job: KilledJob, now: JobProgress, seen_at: datetime) -> None:
        requeued_at = now.requeued_at
        if job.retried_after_s is None and requeued_at is not None and requeued_at > job.killed_at:
            job.retried_after_s = (requeued_at - job.killed_at).total_seconds()
        if now.dead and job.retried_after_s is None:
            job.retried_after_s = ((now.ended_at or seen_at) - job.killed_at).total_seconds()
        started_at = now.started_at
        by_other = now.worker is not None and now.worker != job.engine_worker
        if by_other and started_at is not None and started_at > job.killed_at:
            job.restarted_after_s = (started_at - job.killed_at).total_seconds()
            job.outcome = "restarted"
        elif now.dead:
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
        "p90_s": round(p90, 2) if (p90 := percentile(restarts, 90)) is not None else None,
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
