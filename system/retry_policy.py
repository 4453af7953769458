"""Which layer retries what, so that attempts do not multiply. The decision, made here once:

1. **Transport (openai SDK, `max_retries`)**: a single LLM HTTP call that meets a connection error, 408,
   409, 429 or 5xx is retried by the SDK itself, with exponential backoff and jitter, honouring the
   upstream's `retry-after-ms`/`Retry-After` (up to 60 s). Short blips cost milliseconds and never
   reach the job. `SDK_MAX_RETRIES` = 2 (the SDK's default; `LLM_MAX_RETRIES` in RagSettings).
2. **Circuit breaker** (system/rag/breaker.py): counts the calls that failed *after* the SDK's retries; once
   open, calls fail at once without touching the upstream, so job retries stop multiplying HTTP attempts.
3. **Job (RQ `Retry`)**: a job whose pipeline raised a *transient* error (upstream unavailable or timed out,
   breaker open, broker hiccup, job timeout) or whose worker died under it (RQ's AbandonedJobError) is
   run again later: `JOB_MAX_RETRIES` = 2 more times, after ≈ 5 s then ≈ 15 s, each with ±50 % jitter so
   that a burst of failed jobs does not come back at once; the last wait outlasts the breaker's reset
   window (10 s), so a job caught by an outage still gets a try after the breaker half-opens. A job whose
   worker died is retried at once instead: the death says nothing about the upstream, and finding the
   dead worker already took seconds (see the end of this module). A retried job goes to the front of the
   queue: it waited its turn once already, and behind a backlog its client would wait for it all again.
   A *permanent* error (bad input, missing index, a 4xx from the LLM) gets no retry: `on_job_failure`
   cancels the remaining ones. A job out of retries stays in
   RQ's FailedJobRegistry — the dead-letter queue (`ragload dlq`), with its error and attempt count.
4. **Valkey commands**: redis-py's own default `Retry` (3 retries, jittered exponential backoff from 8 ms,
   on connection errors and timeouts) rides out a blip; keep it, and give every client timeouts
   (`socket_connect_timeout`, `socket_timeout`: redis-py has none by default). Past that the API answers
   503 with Retry-After and workers keep reconnecting (RQ's own loop).
5. **Nobody else retries**: no tenacity loop around the pipeline, no retry in the API (it answers 503 with
   Retry-After and the client decides).

Worst case per accepted job: 3 job attempts × 2 LLM calls × 3 HTTP attempts = 18 upstream requests, and
only while the breaker is closed; with it open a job attempt costs no upstream request at all.

RQ runs a `Retry` with an interval through its scheduler: workers must run `with_scheduler=True`, or the
retried jobs sit in the ScheduledJobRegistry for ever.
"""

from __future__ import annotations

import random
import types
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Retry
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from system.metrics import count_job_failure
from system.rag.errors import UpstreamTimeout, UpstreamUnavailable

SDK_MAX_RETRIES = 2  # the openai SDK's default: enough for a blip, short enough to stay within a job
JOB_MAX_RETRIES = 2  # three job attempts in all
JOB_RETRY_BASE_S = 5.0  # first job retry after ≈ 5 s …
JOB_RETRY_FACTOR = 3.0  # … then ≈ 15 s: past the breaker's 10 s reset window
JITTER = 0.5  # ±50 %
ATTEMPTS_META_KEY = "failed_attempts"  # in job.meta: attempts that failed (= all attempts of a DLQ job)
ERROR_META_KEY = "last_error"


class WorkHorseKilled(Exception):
    """The forked work horse died (SIGKILL, OOM) while its worker lived on."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    UpstreamUnavailable,  # includes CircuitOpen, 429 and 5xx after the SDK's retries
    UpstreamTimeout,
    AbandonedJobError,  # the worker died mid-job (SIGKILL, OOM, node loss)
    WorkHorseKilled,  # the forked horse died, its worker did not
    JobTimeoutException,  # RQ's job timeout: the upstream hung past every deadline
    RedisConnectionError,
    RedisTimeoutError,
)


# The worker died under the job: nothing was wrong with the job or the upstream, so no backoff.
DEAD_WORKER_ERRORS: tuple[type[BaseException], ...] = (AbandonedJobError, WorkHorseKilled)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


def retry_intervals(
    retries: int = JOB_MAX_RETRIES,
    base_s: float = JOB_RETRY_BASE_S,
    factor: float = JOB_RETRY_FACTOR,
    jitter: float = JITTER,
    rng: random.Random | None = None,
) -> list[int]:
    """Exponential backoff with jitter, in whole seconds (RQ schedules to the second), at least 1 s each."""
    rng = rng or random.Random()
    return [max(1, round(base_s * factor**n * rng.uniform(1 - jitter, 1 + jitter))) for n in range(retries)]


def job_retry(retries: int = JOB_MAX_RETRIES, intervals: list[int] | None = None) -> Retry:
    """The `retry=` of `queue.enqueue(...)`: fresh jitter for every job. `intervals=[0]` retries at once."""
    intervals = retry_intervals(retries) if intervals is None else intervals
    return Retry(max=retries, interval=intervals, enqueue_at_front=True)


def on_job_failure(
    job: Job, exc_type: type[BaseException], exc_value: BaseException, tb: types.TracebackType | None
) -> None:
    """RQ exception handler (first in the worker's chain): count the attempt, cancel retries if permanent.

    RQ calls the handlers before it decides to retry, with the job object it then uses, so setting
    `retries_left = 0` here sends a permanent failure straight to the FailedJobRegistry. RQ's cleanup of
    abandoned jobs calls the same handlers (with AbandonedJobError), so a killed attempt is counted too.
    """
    meta: dict[str, Any] = job.meta
    meta[ATTEMPTS_META_KEY] = int(meta.get(ATTEMPTS_META_KEY, 0)) + 1
    meta[ERROR_META_KEY] = f"{exc_type.__name__}: {exc_value}"[:500] if str(exc_value) else exc_type.__name__
    job.save_meta()
    if not is_transient(exc_value):
        job.retries_left = 0
    elif isinstance(exc_value, DEAD_WORKER_ERRORS):
        retry_at_once(job)


def retry_at_once(job: Job) -> None:
    """Make the retry RQ is about to schedule an immediate one (RQ's `Job.retry` reads the interval of the
    current attempt from `retry_intervals`, then saves the job): the later attempts keep their backoff."""
    intervals = list(job.retry_intervals or [])
    if not intervals or not job.retries_left:
        return
    intervals[max(len(intervals) - job.retries_left, 0)] = 0
    job.retry_intervals = intervals


def on_work_horse_killed(job: Job, retpid: int, ret_val: int, rusage: object) -> None:
    """`Worker(work_horse_killed_handler=...)`: RQ fails or retries such a job without calling the
    exception handlers, so count the attempt here (RQ retries it: the death of a horse is transient)."""
    job.meta = job.get_meta(refresh=True)  # the horse may have updated it; this is the parent's copy
    exc = WorkHorseKilled(f"work horse {retpid} died (waitpid status {ret_val})")
    on_job_failure(job, WorkHorseKilled, exc, None)
    count_job_failure(job, WorkHorseKilled, exc, None)


# A worker killed mid-job (RQ 3.0, read in its source and measured). RQ finds the job of a dead worker only
# when the job's entry in the StartedJobRegistry expires: a live worker's maintenance then runs
# StartedJobRegistry.cleanup(), which calls the exception handlers above with AbandonedJobError and retries
# the job (Retry left) or fails it ("Moved to FailedJobRegistry, due to AbandonedJobError"). RQ's own entry
# lasts job timeout + 60 s on a SimpleWorker (never renewed: ≈ 3 min at JOB_TIMEOUT_S=120) and
# min(job timeout, job_monitoring_interval) + 60 s on the forking Worker (renewed while the horse lives).
# Ours (system/worker.py): the worker renews the entry every JOB_HEARTBEAT_INTERVAL_S while the job runs —
# the SimpleWorker from a side thread, the forking Worker from its horse monitor — with a TTL of
# JOB_HEARTBEAT_TTL_S, so a dead worker's entry expires that long after its last beat, whatever the job
# timeout. Then maintenance must run: every MAINTENANCE_INTERVAL_S, checked between two jobs, after an idle
# dequeue (which blocks worker_ttl - 15 s) and, on a busy SimpleWorker, by the heartbeat thread. Worst case
# from SIGKILL to the retry: TTL + maintenance interval + dequeue wait = 10 + 5 + 5 = 20 s; the retry of a
# dead worker's job is immediate (`retry_at_once`). A live job's entry expires only if its worker cannot
# reach Valkey for longer than the TTL (or the job outlives its timeout): then the job may run twice
# (at least once, never lost).
JOB_HEARTBEAT_INTERVAL_S = 2  # five beats per TTL: a busy machine may delay a few without harm
JOB_HEARTBEAT_TTL_S = 10
WORKER_TTL_S = 20  # idle dequeue returns every 5 s; a dead idle worker's key expires after 80 s
MAINTENANCE_INTERVAL_S = 5
JOB_MONITORING_INTERVAL_S = JOB_HEARTBEAT_INTERVAL_S  # forking Worker: its horse monitor beats this often
# RQ takes a queue's maintenance lock for 899 s and frees it when done; a worker killed while cleaning (a
# few ms) leaves it behind, and no cleanup (so no recovery of dead workers' jobs) would run for 15 min.
MAINTENANCE_LOCK_STALE_S = 60  # a cleaning never takes this long: a lock held longer belongs to a dead worker
# A worker that dies between taking a job (BLMOVE into the queue's intermediate list) and registering it as
# started (milliseconds later) leaves it in neither the queue nor the StartedJobRegistry; so does a broker
# crash in that window. RQ hands such a job on only after it has been seen there for a minute; ours after
# INTERMEDIATE_STUCK_S, as an abandoned job (counted, retried at once or dead-lettered). Killed after its
# registration but before its start, a job waits for both: its entry's TTL, then this (≈ 20 s, measured).
INTERMEDIATE_STUCK_S = 10


def worker_options() -> dict[str, Any]:
    """Keyword arguments for `Worker(...)`/`SimpleWorker(...)` so that retries, the DLQ's attempt counts,
    the job metrics and abandoned-job detection all work. Also run `worker.work(with_scheduler=True)`."""
    return {
        "exception_handlers": [on_job_failure, count_job_failure],  # this order: see count_job_failure
        "work_horse_killed_handler": on_work_horse_killed,  # forking Worker only; ignored by SimpleWorker
        "worker_ttl": WORKER_TTL_S,
        "maintenance_interval": MAINTENANCE_INTERVAL_S,
        "job_monitoring_interval": JOB_MONITORING_INTERVAL_S,
        "log_job_description": False,  # the description holds the user's question: keep it out of the logs
    }


def failed_attempts(job: Job) -> int | None:
    """Attempts that failed, as counted by `on_job_failure` (None if no such worker ran the job)."""
    value = job.meta.get(ATTEMPTS_META_KEY)
    return int(value) if value is not None else None
