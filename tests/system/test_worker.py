"""Workers: the seed's plain `rq worker`, and `ragload worker --count N` stopping gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from rq import Worker

from loadtests.stack.services import ragload_command
from tests.conftest import MockServer
from tests.system.conftest import TEST_QUEUE
from tests.system.test_api import status, submit

RQ_CLI = str(Path(sys.executable).parent / "rq")


@pytest.mark.parametrize(
    "worker_args",
    [[], ["--with-scheduler", "-w", "system.worker.RagWorker"]],
    ids=["forking Worker", "RagWorker"],
)
async def test_plain_rq_worker_completes_jobs(
    api: httpx.AsyncClient, queued_env: dict[str, str], redis_url: str, worker_args: list[str]
) -> None:
    job_id = await submit(api)

    done = await asyncio.to_thread(
        subprocess.run,
        [RQ_CLI, "worker", "--burst", "--url", redis_url, *worker_args, TEST_QUEUE],
        env={**os.environ, **queued_env},
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    body = await status(api, job_id)
    assert body["status"] == "finished"
    assert body["result"]["answer"].startswith("According to [1]")


async def test_plain_rq_worker_failure_is_readable_too(
    api: httpx.AsyncClient, queued_env: dict[str, str], redis_url: str, mock_server: MockServer
) -> None:
    """A plain worker records no error of its own: the API reads the last line of RQ's traceback."""
    mock_server.configure(error_rate=1.0)
    job_id = await submit(api)

    await asyncio.to_thread(
        subprocess.run,
        [RQ_CLI, "worker", "--burst", "--url", redis_url, TEST_QUEUE],
        env={**os.environ, **queued_env},
        capture_output=True,
        timeout=90,
    )

    body = await status(api, job_id)
    assert body["status"] == "failed"
    assert body["error"].startswith("UpstreamUnavailable: embed: the LLM upstream failed (50")


async def wait_until_started(api: httpx.AsyncClient, job_ids: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [(await status(api, job_id))["status"] for job_id in job_ids]
        if all(state == "started" for state in states):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"jobs not all started after {timeout_s} s: {states}")


async def test_sigterm_stops_every_worker_after_its_current_job(
    api: httpx.AsyncClient, queued_env: dict[str, str], redis_url: str, mock_server: MockServer
) -> None:
    mock_server.configure(chat_latency="const:1500ms")
    job_ids = [await submit(api, query=f"slow question {i}") for i in range(2)]
    launcher = subprocess.Popen(
        ragload_command("worker", "--count", "2"),
        env={**os.environ, **queued_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so that a failed test can kill the workers too (the signal goes to one pid)
    )
    try:
        await wait_until_started(api, job_ids)
        workers = psutil.Process(launcher.pid).children(recursive=True)
        assert len(workers) >= 2  # two workers, and the scheduler process one of them forks

        launcher.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(launcher.wait, 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)  # a no-op when the test passed
        launcher.wait()

    assert returncode == 0
    assert not [worker for worker in workers if worker.is_running() and worker.status() != "zombie"]
    bodies = [await status(api, job_id) for job_id in job_ids]
    assert [body["status"] for body in bodies] == ["finished", "finished"]
    connection = redis.Redis.from_url(redis_url)
    try:
        assert Worker.all(connection=connection) == []  # both unregistered on the way out
    finally:
        connection.close()
