"""Job retries with real RQ workers on a real Valkey: the limit, permanent errors, a SIGKILLed worker."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker, Worker, get_current_job
from rq.job import Job, JobStatus

from system.rag.errors import UpstreamUnavailable
from system.retry_policy import (
    JOB_MAX_RETRIES,
    failed_attempts,
    is_transient,
    job_retry,
    retry_intervals,
    worker_options,
)

QUEUE = "ragload-test"
REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLERS = worker_options()["exception_handlers"]  # what a worker's maintenance passes to the cleanup


# ---- job functions (module level: RQ imports them by name) ----------------------------------------------


def transient_failure() -> None:
    raise UpstreamUnavailable("the LLM upstream failed (503) [test]", retry_after=1.0)


def permanent_failure() -> None:
    raise ValueError("top_k must be within 1..20 [test]")


def kill_own_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # in a forking Worker: the work horse dies, the worker lives on


def attempt_marker(job_id: str) -> str:
    return f"test:attempted:{job_id}"


def slow_first_attempt(seconds: float) -> str:
    """Sleeps on its first attempt only (a marker in Valkey remembers), so a re-run finishes at once."""
    job = get_current_job()
    assert job is not None
    if job.connection.set(attempt_marker(job.id), 1, nx=True):
        time.sleep(seconds)
    return "done"


# ---- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def queue(connection: Redis) -> Queue:
    """A queue of this test's own: a worker another test left running on the session's Valkey cannot take
    (and fail to import) this test's jobs."""
    return Queue(f"{QUEUE}-{uuid.uuid4().hex[:8]}", connection=connection)


def run_burst(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection, **worker_options()).work(burst=True)


# ---- policy ---------------------------------------------------------------------------------------------


def test_intervals_grow_and_are_jittered() -> None:
    rng = random.Random(1)
    samples = [retry_intervals(rng=rng) for _ in range(200)]
    assert all(len(s) == JOB_MAX_RETRIES and s[0] >= 1 for s in samples)
    assert all(s[1] > s[0] for s in samples)  # ≈ 5 s then ≈ 15 s: the ranges do not overlap
    assert len({tuple(s) for s in samples}) > 20  # jittered, not one fixed schedule


def test_transient_vs_permanent() -> None:
    assert is_transient(UpstreamUnavailable("down"))
    assert not is_transient(ValueError("bad"))


# ---- real worker: retries stop at the limit, permanent errors are not retried -------------------------


def test_transient_failure_is_retried_up_to_the_limit_then_dead_lettered(queue: Queue) -> None:
    job = queue.enqueue(transient_failure, retry=Retry(max=2, interval=0))
    run_burst(queue)
    job = Job.fetch(job.id, connection=queue.connection)
    assert job.get_status() == JobStatus.FAILED
    assert job.id in queue.failed_job_registry
    assert failed_attempts(job) == 3  # the first attempt and two retries, no more
    result = job.latest_result()
    assert result is not None and "UpstreamUnavailable" in (result.exc_string or "")


def test_permanent_failure_is_not_retried(queue: Queue) -> None:
    job = queue.enqueue(permanent_failure, retry=job_retry(intervals=[0]))
    run_burst(queue)
    job = Job.fetch(job.id, connection=queue.connection)
    assert job.get_status() == JobStatus.FAILED
    assert failed_attempts(job) == 1
    assert job.id in queue.failed_job_registry


# ---- a worker SIGKILLed mid-job ------------------------------------------------------------------------

WORKER_SCRIPT = """
import sys
from redis import Redis
from rq import Queue, SimpleWorker
connection = Redis.from_url(sys.argv[1])
SimpleWorker([Queue(sys.argv[2], connection=connection)], connection=connection).work()
"""


def kill_worker_mid_job(redis_url: str, queue: Queue, job: Job) -> None:
    """Start a real worker process, wait until it is inside `job`'s function, SIGKILL it."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, redis_url, queue.name],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120  # generous: a worker imports the pipeline; a loaded machine is slow
        while not queue.connection.exists(attempt_marker(job.id)):  # the job's body is running
            assert worker.poll() is None, "the worker exited before taking the job"
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)


def run_maintenance_after_expiry(queue: Queue, job: Job) -> None:
    """What a live worker's maintenance does, at the time the dead execution's heartbeat has expired.

    RQ keeps a started job in the StartedJobRegistry until its execution's heartbeat TTL passes
    (SimpleWorker: job timeout + 60 s; forking Worker: min(timeout, job_monitoring_interval) + 60 s,
    renewed while it runs). Instead of waiting that long, the test runs the cleanup at that future time.
    """
    registry = queue.started_job_registry
    registry.cleanup(exception_handlers=HANDLERS)  # now: the execution is not yet expired
    assert job.get_status(refresh=True) == JobStatus.STARTED
    expired_at = time.time() + (job.timeout or 0) + 61
    registry.cleanup(timestamp=expired_at, exception_handlers=HANDLERS)


@pytest.mark.slow
def test_sigkilled_worker_job_fails_with_a_reason(redis_url: str, queue: Queue) -> None:
    job = queue.enqueue(slow_first_attempt, 60, job_timeout=5)
    kill_worker_mid_job(redis_url, queue, job)
    assert job.get_status(refresh=True) == JobStatus.STARTED  # nobody will finish it by itself
    assert job.id in queue.started_job_registry

    run_maintenance_after_expiry(queue, job)

    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert job.id in queue.failed_job_registry
    assert job.id not in queue.started_job_registry
    result = job.latest_result()
    assert result is not None and "AbandonedJobError" in (result.exc_string or "")
    assert failed_attempts(Job.fetch(job.id, connection=queue.connection)) == 1


@pytest.mark.slow
def test_sigkilled_worker_job_is_rerun_when_it_has_a_retry(redis_url: str, queue: Queue) -> None:
    job = queue.enqueue(slow_first_attempt, 60, job_timeout=5, retry=Retry(max=1, interval=0))
    kill_worker_mid_job(redis_url, queue, job)

    run_maintenance_after_expiry(queue, job)
    assert job.get_status(refresh=True) == JobStatus.QUEUED  # abandoned → re-enqueued by RQ's Retry
    run_burst(queue)

    job = Job.fetch(job.id, connection=queue.connection)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "done"
    assert failed_attempts(job) == 1  # the killed attempt, counted by the exception handler


@pytest.mark.slow
def test_a_killed_work_horse_is_retried_and_counted(queue: Queue) -> None:
    job = queue.enqueue(kill_own_process, retry=Retry(max=1, interval=0))
    Worker([queue], connection=queue.connection, **worker_options()).work(burst=True)
    job = Job.fetch(job.id, connection=queue.connection)
    assert job.get_status() == JobStatus.FAILED
    assert failed_attempts(job) == 2  # both horses' deaths counted, then dead-lettered
    result = job.latest_result()
    assert result is not None and "Work-horse terminated unexpectedly" in (result.exc_string or "")
