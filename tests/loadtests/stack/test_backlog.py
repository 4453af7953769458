"""The backlog a stack finds at start, and `--fresh`'s discard of it, on a real Valkey with RQ's own calls."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker, Worker

from loadtests.stack.backlog import Backlog, discard_backlog, read_backlog
from loadtests.stack.embedded_stack import EmbeddedStack, StackError
from loadtests.stack.services import free_port

QUEUE = "ragload"
JOB = "system.jobs.process_query"


def test_the_backlog_counts_and_discard_deletes_what_would_run_but_keeps_dead_letters(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=connection)
    queued = [queue.enqueue(JOB, f"q{i}", 4) for i in range(3)]
    retry = queue.enqueue_in(timedelta(minutes=5), JOB, "retry", 4)
    dead = queue.enqueue(JOB, "dead", 4)
    queue.remove(dead)
    queue.failed_job_registry.add(dead, ttl=600, exc_string="RuntimeError: it failed")
    # A worker that died while running a job, and one that died after taking a job from the queue: RQ's
    # own steps up to the point where each was killed.
    worker = SimpleWorker([queue], connection=connection)
    running = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert running is not None
    worker.prepare_execution(running[0])
    worker.prepare_job_execution(running[0], remove_from_intermediate_queue=True)
    taken = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert taken is not None

    assert read_backlog(connection, QUEUE) == Backlog(queued=1, scheduled=1, interrupted=2)
    assert discard_backlog(connection, QUEUE) == Backlog(queued=1, scheduled=1, interrupted=2)
    assert read_backlog(connection, QUEUE) == Backlog(queued=0, scheduled=0, interrupted=0)
    for job in (*queued, retry):
        assert queue.fetch_job(job.id) is None  # deleted, not only unlisted
    assert queue.failed_job_registry.get_job_ids() == [dead.id]  # the dead-letter queue stays
    assert queue.fetch_job(dead.id) is not None
    connection.close()


def test_a_backlog_describes_itself_by_kind() -> None:
    text = str(Backlog(queued=1200, scheduled=4, interrupted=30))
    assert text.startswith("1,234 job(s): 1,200 queued, 4 scheduled for a retry, 30 interrupted")


def test_fresh_on_a_given_broker_refuses_while_workers_are_registered_on_the_queue(
    tmp_path: Path, redis_url: str
) -> None:
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=connection)
    waiting = queue.enqueue(JOB, "q", 4)
    Worker([queue], connection=connection).register_birth()  # another deployment's live worker
    stack = EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        workers=0,
        with_baseline=False,
        env={"REDIS_URL": redis_url, "OPENAI_BASE_URL": ""},
        log_dir=tmp_path,
        fresh=True,
    )
    with pytest.raises(StackError, match=r"--fresh would delete jobs that 1 registered worker"):
        stack.start()
    assert stack.mock is None and stack.api is None  # refused before starting anything
    assert queue.job_ids == [waiting.id]  # nothing deleted
    connection.close()
