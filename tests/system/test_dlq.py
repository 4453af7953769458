"""`ragload dlq` against a real Valkey, with jobs failed by a real RQ SimpleWorker in burst mode."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.job import Job, JobStatus

from loadtests import cli
from loadtests.stack.services import ragload_command
from system.metrics import count_job_failure
from system.rag.errors import UpstreamUnavailable
from system.retry_policy import on_job_failure

QUEUE = "ragload-dlq-test"
UPSTREAM_FIXED = "test:upstream-fixed"


def answer_when_fixed(query: str) -> str:
    """Fails (transiently) until the flag UPSTREAM_FIXED is set in Valkey."""
    job = get_current_job()
    assert job is not None
    if not job.connection.get(UPSTREAM_FIXED):
        raise UpstreamUnavailable("the LLM upstream failed (503) [test]", retry_after=1.0)
    return f"answer to {query}"


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    connection = Redis.from_url(redis_url)
    yield Queue(QUEUE, connection=connection)
    connection.close()


def fail_jobs(queue: Queue, count: int, retries: int = 1) -> list[str]:
    jobs = [
        queue.enqueue(answer_when_fixed, f"question {n}", retry=Retry(max=retries, interval=0))
        for n in range(count)
    ]
    work(queue)
    return [job.id for job in jobs]


def work(queue: Queue) -> None:
    worker = SimpleWorker(
        [queue], connection=queue.connection, exception_handlers=[on_job_failure, count_job_failure]
    )
    worker.work(burst=True)


def dlq(redis_url: str, *args: str) -> int:
    return cli.main(["dlq", "--redis-url", redis_url, "--queue", QUEUE, *args])


def test_list_shows_each_dead_job_with_error_and_attempts(
    redis_url: str, queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fail_jobs(queue, 2, retries=1)
    assert dlq(redis_url, "--json", "list") == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(entry["job_id"] for entry in listed) == sorted(ids)
    for entry in listed:
        assert entry["attempts"] == 2  # first try + one retry
        assert "UpstreamUnavailable" in entry["error"] and "503" in entry["error"]
        assert entry["func"].endswith("answer_when_fixed")

    assert dlq(redis_url, "list") == 0
    text = capsys.readouterr().out
    assert text.startswith("2 job(s) in the dead-letter queue")
    assert all(f"{job_id}  attempts=2" in text for job_id in ids)


def test_show_prints_the_traceback(redis_url: str, queue: Queue, capsys: pytest.CaptureFixture[str]) -> None:
    (job_id,) = fail_jobs(queue, 1, retries=2)
    assert dlq(redis_url, "show", job_id) == 0
    out = capsys.readouterr().out
    assert f"job       {job_id}\n" in out
    assert "attempts  3" in out
    assert "Traceback (most recent call last)" in out and "answer_when_fixed" in out

    assert dlq(redis_url, "show", "no-such-job") == 1


def test_requeue_brings_a_job_back_and_it_finishes_once_the_cause_is_gone(
    redis_url: str, queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = fail_jobs(queue, 2)
    queue.connection.set(UPSTREAM_FIXED, 1)

    assert dlq(redis_url, "requeue", first) == 0
    assert first not in queue.failed_job_registry
    assert Job.fetch(first, connection=queue.connection).get_status() == JobStatus.QUEUED
    work(queue)
    job = Job.fetch(first, connection=queue.connection)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "answer to question 0"
    assert second in queue.failed_job_registry  # untouched

    assert dlq(redis_url, "requeue", "--all") == 0
    work(queue)
    assert Job.fetch(second, connection=queue.connection).get_status() == JobStatus.FINISHED
    assert queue.failed_job_registry.count == 0

    capsys.readouterr()
    assert dlq(redis_url, "requeue", first) == 1  # no longer dead: reported, not silently ignored
    assert "not in the dead-letter queue" in capsys.readouterr().err


def test_purge_deletes_dead_jobs(redis_url: str, queue: Queue, capsys: pytest.CaptureFixture[str]) -> None:
    ids = fail_jobs(queue, 3)
    assert dlq(redis_url, "purge") == 0
    assert "purged 3 job(s)" in capsys.readouterr().out
    assert queue.failed_job_registry.count == 0
    assert not any(queue.connection.exists(Job.key_for(job_id)) for job_id in ids)


def test_the_cli_entry_point_runs_the_command(redis_url: str, queue: Queue) -> None:
    fail_jobs(queue, 1)
    done = subprocess.run(
        ragload_command("dlq", "--redis-url", redis_url, "--queue", QUEUE, "list"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 job(s) in the dead-letter queue")


def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dlq", "--redis-url", "redis://127.0.0.1:1/0", "list"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_options_work_after_the_action_too(
    redis_url: str, queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    [job_id] = fail_jobs(queue, 1)
    capsys.readouterr()
    assert cli.main(["dlq", "list", "--redis-url", redis_url, "--queue", QUEUE, "--json"]) == 0
    assert [row["job_id"] for row in json.loads(capsys.readouterr().out)] == [job_id]
