"""The SAQ queue of the queued system: SAQ's RedisQueue on the same Valkey, with our timings and a
dead-letter index. Decisions (docs/architecture.md, "Decisions"; measured figures there):

- **Heartbeats and the sweep** recover a dead worker's jobs. A running job's `touched` is renewed every
  HEARTBEAT_INTERVAL_S by the job itself (system/engines/saq/jobs.py, SAQ's `job.update()`: SAQ sends no
  heartbeat of its own); a job whose `touched` is older than HEARTBEAT_TTL_S (SAQ's `Job.heartbeat`) is
  stuck, and the sweep that one worker runs every SWEEP_INTERVAL_S (SAQ's default: 60 s) aborts it and
  retries it (attempts left) or ends it ABORTED (dead-lettered), with SWEPT_ERROR as its error.
  SIGKILL → retried within HEARTBEAT_TTL_S + SWEEP_INTERVAL_S + the sweep's own work ≈ 10 + 5 + ε s.
- **The sweep does not wait for an abort to land.** SAQ's sweep waits up to `abort` seconds (5 s by
  default) per stuck job for its worker to confirm the abort — one job after the other, so a dead worker
  holding 64 jobs would take 64 × 5 s to recover (its worker is dead: nobody confirms). We give each job
  SWEEP_ABORT_WAIT_S. What the wait would buy — a LIVE worker cancelling a job the sweep found stuck —
  cannot happen here before SAQ's own job timeout cancels it anyway, and if it did, the job runs twice
  (at least once, never lost).
- **SAQ's sweep races the dequeue** (tobymao/saq#277): a worker moves a job into the active list (BLMOVE)
  and marks it ACTIVE a few round trips later (later still on a busy event loop); SAQ's sweep takes any job
  of the active list that is not ACTIVE for a dead worker's, so a sweep in between retries a job that is
  running, which then runs twice with its attempt count reset (seen here at every worker start: the first
  sweep runs while the first jobs are dequeued). `sweep` below is SAQ's, except that a job found not ACTIVE
  is swept only once it has been seen so for STARTING_GRACE_S (first sighting kept in Valkey, so that any
  worker's sweep may act on it): a worker that died between the BLMOVE and the mark still loses the job to
  the sweep, a few seconds later.
- **The sweep keeps a job on the active list until it is retried or ended.** SAQ's `abort` takes an active
  job off the active list at once and leaves its retry or end to the sweep that follows; a sweeping worker
  SIGKILLed in between (seen in the worker-kills-saq fault run: job left `aborting`, on no list, never
  looked at again) loses the job. `_mark_abandoned` is SAQ's abort of an active job without that removal:
  `retry` and `finish` take the job off the active list in the same transaction that re-queues or ends it,
  so a sweeper killed in between leaves an `aborting` job on the active list, which the next sweep takes
  (after STARTING_GRACE_S, as any job found there not ACTIVE).
- **Dead letters**: SAQ keeps a failed or aborted job under its own key until its `ttl`; it has no failed
  registry. `finish()` adds every such job to a sorted set (`dead_letter_key`, score = when its key
  expires), written BEFORE SAQ writes the job's end, so that a crash in between leaves an entry whose job
  did not end (skipped when read) rather than a dead job nobody can list. `ragload dlq --engine saq`
  reads it (system/engines/saq/dlq.py).
- **TTLs**: a job is enqueued with ttl = FAILURE_TTL_S, and the job sets RESULT_TTL_S on itself when it
  succeeds: a dead-lettered job stays a day whichever way it failed (a worker's exception, the job timeout,
  the sweep of a dead worker), a result the short time a client needs to fetch it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis as AsyncRedis
from saq.job import UNSUCCESSFUL_TERMINAL_STATUSES, Job, Status
from saq.queue.redis import RedisQueue

from system.engines.saq.outcomes import count_swept
from system.settings import SystemSettings

log = logging.getLogger(__name__)

JOB_FUNCTION = "process_query"  # the name the worker registers system/engines/saq/jobs.py's function under
HEARTBEAT_INTERVAL_S = 2.0  # five beats per TTL: a busy machine may delay a few without harm
HEARTBEAT_TTL_S = 10  # SAQ's Job.heartbeat: no beat for this long and the sweep takes the job as abandoned
SWEEP_INTERVAL_S = 5  # SAQ's worker timer `sweep` (and the sweep lock's TTL): one worker sweeps this often
SWEEP_ABORT_WAIT_S = 0.05  # per stuck job (SAQ's default 5 s); see the module's docstring
ABORT_SIGNAL_TTL_S = 5  # how long the abort signal of a swept job lives (SAQ's `abort` default)
STARTING_GRACE_S = 5.0  # a dequeued job not yet marked ACTIVE is left alone this long by the sweep
WORKER_INFO_INTERVAL_S = 2  # SAQ's worker timer `worker_info`: registration and the jobs-in-hand count
DEQUEUE_TIMEOUT_S = 2.0  # an idle worker's BLMOVE returns this often (it must, to stop within a grace)
# SAQ's own backoff: the k-th retry waits uniform(0, RETRY_DELAY_S × 2^(k-1)) s, capped at RETRY_MAX_DELAY_S
# ("full jitter": a burst of failed jobs does not come back at once); the mean wait of the second retry
# (10 s) reaches the breaker's 10 s reset window.
RETRY_DELAY_S = 10.0
RETRY_MAX_DELAY_S = 30.0
SWEPT_ERROR = (
    f"AbandonedJobError: its worker sent no heartbeat for {HEARTBEAT_TTL_S} s (died or hung) while it ran"
)
OPS_IN_FLIGHT = 256  # SAQ throttles enqueue/job()/abort to this many at once per queue (its default: 20)


@dataclass(frozen=True)
class SaqKeys:
    """SAQ's key layout for one queue (RedisQueue.namespace / job_id), plus our dead-letter index."""

    queue_name: str

    def namespace(self, key: str) -> str:
        return f"saq:{self.queue_name}:{key}"

    @property
    def queued(self) -> str:
        return self.namespace("queued")

    @property
    def active(self) -> str:
        return self.namespace("active")

    @property
    def incomplete(self) -> str:
        return self.namespace("incomplete")

    @property
    def stats(self) -> str:
        return self.namespace("stats")

    @property
    def sweep_lock(self) -> str:
        return self.namespace("sweep")

    @property
    def first_seen(self) -> str:
        return self.namespace("ragload-first-seen")

    @property
    def dead_letters(self) -> str:
        return self.namespace("ragload-dead-letters")

    def job(self, job_key: str) -> str:
        return f"saq:job:{self.queue_name}:{job_key}"

    def job_key(self, job_id: str) -> str:
        return job_id.removeprefix(f"saq:job:{self.queue_name}:")


class RagQueue(RedisQueue):
    """SAQ's RedisQueue; `sweep` waits SWEEP_ABORT_WAIT_S per stuck job, `finish` indexes dead letters, and
    the jobs the sweep retries or ends are counted (system/engines/saq/outcomes.py)."""

    def __init__(self, redis: AsyncRedis, name: str) -> None:
        super().__init__(redis, name=name, swept_error_message=SWEPT_ERROR, max_concurrent_ops=OPS_IN_FLIGHT)
        self.keys = SaqKeys(name)

    async def sweep(self, lock: int = SWEEP_INTERVAL_S, abort: float = SWEEP_ABORT_WAIT_S) -> list[str]:
        """SAQ's RedisQueue.sweep with the starting grace (see the module's docstring); one worker at a time
        (SAQ's sweep lock, held `lock` seconds)."""
        if not await self.redis.set(self.keys.sweep_lock, 1, ex=lock, nx=True):
            return []
        job_ids: list[Any] = await self.redis.lrange(self.keys.active, 0, -1)
        raw_jobs = await self.redis.mget(job_ids) if job_ids else []
        await self._forget_first_seen(job_ids)
        swept = []
        for job_id, raw in zip(job_ids, raw_jobs, strict=True):
            job = self.deserialize(raw)
            if job is None:  # expired: SAQ's own handling of a missing job
                swept.append(job_id)
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.lrem(self.keys.active, 0, job_id)
                    pipe.zrem(self.keys.incomplete, job_id)
                    await pipe.execute()
                continue
            if job.status == Status.ACTIVE and not job.stuck:
                continue
            if job.status != Status.ACTIVE and not await self._starting_too_long(job_id, job):
                continue
            swept.append(job_id)
            await self.redis.hdel(self.keys.first_seen, job_id)
            log.info("sweeping job %s (status %s)", job.key, job.status.value)
            await self._mark_abandoned(job)
            with contextlib.suppress(TimeoutError):
                await job.refresh(abort)
            if job.retryable:
                await self.retry(job, error=SWEPT_ERROR)
            else:
                await self.finish(job, Status.ABORTED, error=SWEPT_ERROR)
        return [job_id.decode() for job_id in swept]

    async def _mark_abandoned(self, job: Job, signal_ttl_s: int = ABORT_SIGNAL_TTL_S) -> None:
        """SAQ's `abort` (status ABORTING, which a live worker still running the job obeys by cancelling it,
        and SAQ's abort key), without taking the job off the active list (see the module's docstring)."""
        job.status = Status.ABORTING
        job.error = SWEPT_ERROR
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(job.id, self.serialize(job))
            pipe.set(job.abort_id, SWEPT_ERROR, ex=signal_ttl_s)
            pipe.publish(job.id, job.status)
            await pipe.execute()

    async def _starting_too_long(self, job_id: Any, job: Job) -> bool:
        """Seen not ACTIVE in the active list for STARTING_GRACE_S. A sighting is of one pass through the
        active list: a retried or re-queued job comes back with another `queued`/`touched`/`attempts`, so a
        sighting left from its earlier pass (no sweep ran in between to drop it) starts the grace anew."""
        now_ms = time.time() * 1000
        this_pass = f"{job.queued}:{job.touched}:{job.attempts}"
        seen = await self.redis.hget(self.keys.first_seen, job_id)
        if seen is not None:
            seen_pass, _, first_ms = (seen.decode() if isinstance(seen, bytes) else seen).rpartition("|")
            if seen_pass == this_pass:
                return now_ms - float(first_ms) >= STARTING_GRACE_S * 1000
        await self.redis.hset(self.keys.first_seen, job_id, f"{this_pass}|{now_ms}")
        return False

    async def _forget_first_seen(self, active: list[Any]) -> None:
        """Drop the first sightings of jobs no longer in the active list (marked, ended or swept)."""
        seen: list[Any] = await self.redis.hkeys(self.keys.first_seen)
        gone = set(seen) - set(active)
        if gone:
            await self.redis.hdel(self.keys.first_seen, *gone)

    async def finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None, **kwargs: Any
    ) -> None:
        if status in UNSUCCESSFUL_TERMINAL_STATUSES:
            expires_ms = (time.time() + max(job.ttl, 0)) * 1000
            await self.redis.zadd(self.keys.dead_letters, {job.key: expires_ms})
        await super().finish(job, status, result=result, error=error, **kwargs)
        if error == SWEPT_ERROR:
            count_swept(retried=False)

    async def retry(self, job: Job, error: str | None) -> None:
        await super().retry(job, error)
        if error == SWEPT_ERROR:
            count_swept(retried=True)


def job_queue(settings: SystemSettings, redis: AsyncRedis) -> RagQueue:
    return RagQueue(redis, settings.queue_name)


def job_options(settings: SystemSettings) -> dict[str, Any]:
    """SAQ's per-job settings for `queue.enqueue(JOB_FUNCTION, …)` (SAQ counts attempts: retries + 1)."""
    return {
        "timeout": settings.job_timeout_s,
        "heartbeat": HEARTBEAT_TTL_S,
        "retries": settings.job_max_retries + 1,
        "retry_delay": RETRY_DELAY_S,
        "retry_backoff": RETRY_MAX_DELAY_S,
        "ttl": settings.failure_ttl_s,
    }
