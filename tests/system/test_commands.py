"""The commands as a user runs them: `ragload api` (uvicorn, N processes) and `ragload worker`, over HTTP."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import redis
from rq import Queue

from loadtests.stack.services import ManagedProcess, free_port, ragload_command
from system.retry_policy import job_retry
from tests.conftest import MockServer
from tests.system.conftest import TEST_QUEUE
from tests.system.test_api import JSON_QUESTION


@pytest.fixture
def served(queued_env: dict[str, str]) -> Iterator[str]:
    """`ragload api --processes 2` and `ragload worker --count 1` as real processes; yields the API's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = ManagedProcess(
        "api",
        ragload_command("api", "--port", str(port), "--processes", "2", "--log-level", "warning"),
        env=queued_env,
        ready_url=f"{url}/readyz",
    )
    workers = ManagedProcess("workers", ragload_command("worker", "--count", "1"), env=queued_env)
    try:
        api.start()
        workers.start()
        api.wait_ready()
        yield url
    finally:
        workers.stop()
        api.stop()


def test_submit_and_long_poll_over_http(served: str) -> None:
    with httpx.Client(base_url=served, timeout=40) as client:
        submitted = client.post("/chat", json={"query": JSON_QUESTION, "top_k": 2})
        assert submitted.status_code == 202
        status_url = submitted.json()["status_url"]
        assert status_url.startswith(f"{served}/job-status?job_id=")
        body = client.get(f"{status_url}&wait=30").json()

    assert body["status"] == "finished"
    assert body["result"]["answer"].startswith("According to [1]")
    assert len(body["result"]["sources"]) == 2


def test_a_transient_failure_is_retried_and_the_long_poll_waits_for_the_last_attempt(
    served: str, mock_server: MockServer, redis_url: str
) -> None:
    """With one job retry, the first failure only schedules a retry: the long-poll waits for the last one."""
    # Each attempt fails after 1 s, so the long-poll below is already waiting when the first one ends.
    mock_server.configure(error_rate=1.0, embed_latency="const:1s")
    # The API's jobs get no retry here (JOB_MAX_RETRIES=0): enqueue this one with RQ, as the API would.
    connection = redis.Redis.from_url(redis_url)
    job = Queue(TEST_QUEUE, connection=connection).enqueue(
        "system.jobs.process_query", JSON_QUESTION, 4, retry=job_retry(1, intervals=[1])
    )
    connection.close()
    with httpx.Client(base_url=served, timeout=40) as client:
        body = client.get("/job-status", params={"job_id": job.id, "wait": 25}).json()

    assert body["status"] == "failed"
    assert body["error"].startswith("UpstreamUnavailable: embed:")
    assert "run" in body["timings_ms"]


def test_api_without_redis_url_says_so(queued_env: dict[str, str]) -> None:
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    done = subprocess.run(ragload_command("api"), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "REDIS_URL" in done.stderr
