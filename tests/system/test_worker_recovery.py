"""A SIGKILLed worker's job is retried by another worker within seconds, with the default job timeout.

Real processes: the session's Valkey, real RQ workers as each deployment runs them, a real SIGKILL. The job
(`time.sleep`) is still running when its worker dies; RQ's own cleanup, run by a live worker, must find it
once the heartbeat the dead worker no longer renews expires (system/retry_policy.py: ≤ 20 s by design),
count the attempt through the worker's exception handlers and retry it at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

from loadtests.stack.services import ManagedProcess, ragload_command
from system.retry_policy import ATTEMPTS_META_KEY, ERROR_META_KEY, JOB_MAX_RETRIES, job_retry
from tests.system.conftest import TEST_QUEUE

RETRY_BOUND_S = 30.0  # the promise; the design's worst case is 20 s, typically 10-15 s
JOB_TIMEOUT_S = 120  # the default JOB_TIMEOUT_S: recovery must not depend on a short job timeout
SLEEP_S = 4.0  # long enough to be killed mid-job, short enough for the retry to finish soon
REGISTER_TIMEOUT_S = 60.0


def rq_command(redis_url: str) -> list[str]:
    rq = str(Path(sys.executable).parent / "rq")
    return [rq, "worker", "-w", "system.worker.RagWorker", "--with-scheduler", "--url", redis_url, TEST_QUEUE]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def connection(queued_env: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(queued_env["REDIS_URL"])
    yield client
    client.close()


@pytest.mark.parametrize("deployment", ["pool", "one-per-process", "rq-cli"])
def test_a_killed_workers_job_is_retried_within_seconds(
    deployment: str, queued_env: dict[str, str], connection: redis.Redis, tmp_path: Path
) -> None:
    """pool: `ragload worker --count 2`, one child SIGKILLed (the pool lives on); one-per-process: two
    `ragload worker --count 1` as `ragload up` runs them, one whole process group SIGKILLed (its scheduler
    too); rq-cli: two plain `rq worker -w system.worker.RagWorker`, one SIGKILLed."""
    env = {**os.environ, **queued_env}
    if deployment == "pool":
        argvs = [ragload_command("worker", "--count", "2")]
    elif deployment == "one-per-process":
        argvs = [ragload_command("worker", "--count", "1")] * 2
    else:
        argvs = [rq_command(queued_env["REDIS_URL"])] * 2
    processes = [
        ManagedProcess(f"worker-{i}", argv, env, log_path=tmp_path / f"worker-{i}.log").start()
        for i, argv in enumerate(argvs)
    ]
    queue = Queue(TEST_QUEUE, connection=connection)
    try:
        wait_for(lambda: len(Worker.all(queue=queue)) == 2, REGISTER_TIMEOUT_S, "two workers to register")
        job = queue.enqueue("time.sleep", SLEEP_S, job_timeout=JOB_TIMEOUT_S, retry=job_retry())
        wait_for(lambda: job.get_status() == JobStatus.STARTED, 30, "the job to start")
        job.refresh()
        victim_name = job.worker_name
        assert victim_name, "a started job names its worker"
        victim = Worker.find_by_key(Worker.redis_worker_namespace_prefix + victim_name, connection=connection)
        assert victim is not None and victim.pid
        if deployment == "one-per-process":
            owner = next(p for p in processes if p.pid is not None and _in_group(victim.pid, p.pid))
            owner.signal(signal.SIGKILL)  # the whole `ragload worker` process group, as the fault runs do
        else:
            os.kill(victim.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)

        def restarted() -> bool:
            job.refresh()
            return job.worker_name != victim_name and job.get_status(refresh=False) in (
                JobStatus.STARTED,
                JobStatus.FINISHED,
            )

        wait_for(restarted, 90, "another worker to start the job again")
        assert job.started_at is not None
        restart_s = (job.started_at - killed_at).total_seconds()
        print(f"{deployment}: SIGKILL -> restarted by another worker after {restart_s:.1f} s")
        assert 0 < restart_s < RETRY_BOUND_S

        # The attempt went through RQ's Retry and the worker's exception handlers (retry_policy.py).
        assert job.meta[ATTEMPTS_META_KEY] == 1
        assert str(job.meta[ERROR_META_KEY]).startswith("AbandonedJobError")
        assert job.retries_left == JOB_MAX_RETRIES - 1
        assert job.retry_intervals is not None and job.retry_intervals[0] == 0  # retried at once
        wait_for(lambda: job.get_status() == JobStatus.FINISHED, 60, "the retried job to finish")
        assert Job.fetch(job.id, connection=connection).get_status() == JobStatus.FINISHED
    finally:
        for process in processes:
            process.stop()


def _in_group(pid: int, group_leader: int) -> bool:
    try:
        return os.getpgid(pid) == group_leader
    except ProcessLookupError:
        return False


def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_handed_on(
    queued_env: dict[str, str], connection: redis.Redis, tmp_path: Path
) -> None:
    """A worker's dequeue moves the job into the queue's intermediate list and registers it as started a
    moment later; a worker (or broker) dying in between leaves it in neither place. Done here by hand."""
    queue = Queue(TEST_QUEUE, connection=connection)
    job = queue.enqueue("time.sleep", 0.1, job_timeout=JOB_TIMEOUT_S, retry=job_retry())
    assert connection.lmove(queue.key, queue.intermediate_queue.key) == job.id.encode()  # then "dies"
    env = {**os.environ, **queued_env}
    worker = ManagedProcess(
        "worker", ragload_command("worker", "--count", "1"), env, log_path=tmp_path / "w.log"
    )
    worker.start()
    try:
        wait_for(lambda: len(Worker.all(queue=queue)) == 1, REGISTER_TIMEOUT_S, "the worker to register")
        registered = time.monotonic()
        wait_for(lambda: job.get_status() == JobStatus.FINISHED, 60, "the stuck job to be handed on and run")
        handed_on_s = time.monotonic() - registered
        print(f"stuck in the intermediate list: run {handed_on_s:.1f} s after a live worker came")
        assert handed_on_s < RETRY_BOUND_S
        job.refresh()
        assert job.meta[ATTEMPTS_META_KEY] == 1 and str(job.meta[ERROR_META_KEY]).startswith(
            "AbandonedJobError"
        )
        assert connection.llen(queue.intermediate_queue.key) == 0
    finally:
        worker.stop()
