"""The queued API on the SAQ engine (QUEUE_ENGINE=saq) end to end: the real app (ASGI), the session's
Valkey, real `ragload worker --engine saq` processes, the real mock. The same contract as the RQ engine
(tests/system/test_api.py): 202/status/404/422/429, the long-poll, readable failures, retries, the
dead-letter queue and its requeue, a SIGKILLed worker's jobs, metrics with `engine="saq"`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from saq.job import Job, Status

from loadtests.stack.services import ManagedProcess, ragload_command
from system.engines.saq import queue as saq_queue
from system.engines.saq.queue import SaqKeys
from system.engines.saq.state import registered_workers
from tests.conftest import MockServer
from tests.system.conftest import TEST_QUEUE, running_api

LONG_WAIT_S = 25.0  # a long-poll's `wait` that a test expects to be cut short
RETRY_BOUND_S = 30.0  # the promise for a SIGKILLed worker's jobs
WORKER_TIMEOUT_S = 90  # a burst worker starts (imports, index) in a second or two and runs a few jobs
REGISTER_TIMEOUT_S = 60.0
JSON_QUESTION = "How do I serialize an object to a JSON formatted string?"
PIPELINE_TIMINGS = {"embed", "retrieve", "llm", "total"}


@pytest.fixture
def saq_env(queued_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("QUEUE_ENGINE", "saq")
    return {**queued_env, "QUEUE_ENGINE": "saq"}


@pytest.fixture
async def api(saq_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api() as client:
        yield client


@pytest.fixture
def connection(saq_env: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(saq_env["REDIS_URL"])
    yield client
    client.close()


def run_burst_worker(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """`ragload worker --engine saq --burst`: runs the queued jobs, exits once the queue is empty."""
    done = subprocess.run(
        ragload_command("worker", "--engine", "saq", "--burst", *extra),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def start_workers(env: dict[str, str], tmp_path: Path, n: int, concurrency: int = 8) -> list[ManagedProcess]:
    argv = ragload_command("worker", "--engine", "saq", "--concurrency", str(concurrency))
    return [
        ManagedProcess(
            f"saq-worker-{i}", argv, {**os.environ, **env}, log_path=tmp_path / f"w{i}.log"
        ).start()
        for i in range(n)
    ]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_job(connection: redis.Redis, job_id: str) -> dict[str, Any]:
    """The job as SAQ stores it (JSON), {} if there is none."""
    raw = connection.get(SaqKeys(TEST_QUEUE).job(job_id))
    return dict(json.loads(raw)) if raw else {}


async def submit(api: httpx.AsyncClient, query: str = JSON_QUESTION, top_k: int = 4) -> str:
    response = await api.post("/chat", json={"query": query, "top_k": top_k})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


async def status(api: httpx.AsyncClient, job_id: str, wait: float = 0) -> dict[str, Any]:
    response = await api.get("/job-status", params={"job_id": job_id, "wait": wait})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- the contract ----------------------------------------------------------------------------------------


async def test_submit_returns_202_and_the_job_is_in_saqs_queue(
    api: httpx.AsyncClient, connection: redis.Redis
) -> None:
    response = await api.post("/chat", json={"query": JSON_QUESTION})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert uuid.UUID(body["job_id"]).version == 4
    assert response.headers["X-Job-ID"] == body["job_id"]
    keys = SaqKeys(TEST_QUEUE)
    assert connection.lrange(keys.queued, 0, -1) == [keys.job(body["job_id"]).encode()]
    assert connection.llen(f"rq:queue:{TEST_QUEUE}") == 0  # not RQ's
    followed = await api.get(body["status_url"])
    assert followed.json() == {
        "job_id": body["job_id"],
        "status": "queued",
        "result": None,
        "error": None,
        "timings_ms": {},
    }


async def test_job_finishes_with_an_answer_from_the_corpus(
    api: httpx.AsyncClient, saq_env: dict[str, str]
) -> None:
    job_id = await submit(api, top_k=3)

    run_burst_worker(saq_env)

    body = await status(api, job_id)
    assert body["status"] == "finished", body
    assert body["error"] is None
    result = body["result"]
    assert result["answer"].startswith("According to [1]")
    assert len(result["sources"]) == 3
    assert result["sources"][0]["id"].startswith("json.")
    assert PIPELINE_TIMINGS <= set(body["timings_ms"]) and {"queue_wait", "run"} <= set(body["timings_ms"])
    # SAQ keeps whole milliseconds: the run covers the pipeline's total up to that rounding
    assert body["timings_ms"]["run"] >= body["timings_ms"]["total"] - 1


async def test_many_jobs_run_at_once_in_one_process(
    api: httpx.AsyncClient, saq_env: dict[str, str], mock_server: MockServer
) -> None:
    """8 jobs whose chat call takes 1 s, one process at concurrency 8: their runs overlap (RQ would run them
    one after the other in one process)."""
    mock_server.configure(chat_latency="const:1000ms")
    job_ids = [await submit(api) for _ in range(8)]

    run_burst_worker(saq_env, "--concurrency", "8")

    bodies = [await status(api, job_id) for job_id in job_ids]
    assert [body["status"] for body in bodies] == ["finished"] * 8
    endpoints = mock_server.stats()["endpoints"]
    assert max(stats["max_in_flight"] for path, stats in endpoints.items() if "chat" in path) >= 2


async def test_long_poll_returns_as_soon_as_the_job_finishes(
    api: httpx.AsyncClient, saq_env: dict[str, str], connection: redis.Redis, tmp_path: Path
) -> None:
    job_id = await submit(api)
    workers = start_workers(saq_env, tmp_path, 1)
    try:
        started = time.monotonic()
        body = await status(api, job_id, wait=LONG_WAIT_S)
        answered_ms = time.time() * 1000
        elapsed = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()

    assert body["status"] == "finished"
    completed_ms = float(stored_job(connection, job_id)["completed"])  # SAQ: ms since the epoch
    # Woken by the job's end, not by the wait limit (the worker starts in ~2 s, more on a busy machine).
    assert answered_ms - completed_ms < LONG_WAIT_S / 5 * 1000
    assert elapsed < LONG_WAIT_S


async def test_long_poll_gives_up_at_the_wait_limit_while_no_worker_runs(api: httpx.AsyncClient) -> None:
    job_id = await submit(api)

    started = time.monotonic()
    body = await status(api, job_id, wait=0.5)

    assert body["status"] == "queued"
    assert 0.4 < time.monotonic() - started < LONG_WAIT_S


async def test_concurrent_long_polls_all_return(api: httpx.AsyncClient, saq_env: dict[str, str]) -> None:
    job_ids = [await submit(api) for _ in range(5)]
    polls = [asyncio.create_task(status(api, job_id, wait=LONG_WAIT_S)) for job_id in job_ids]
    await asyncio.to_thread(run_burst_worker, saq_env)

    bodies = await asyncio.gather(*polls)
    assert [body["status"] for body in bodies] == ["finished"] * 5


async def test_unknown_job_is_404_and_malformed_is_422(api: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    response = await api.get("/job-status", params={"job_id": unknown, "wait": 1})
    assert response.status_code == 404
    assert unknown in response.json()["detail"]
    assert (await api.get("/job-status", params={"job_id": "not-a-uuid"})).status_code == 422
    assert (await api.post("/chat", json={"query": ""})).status_code == 422


async def test_past_the_queue_bound_submissions_get_429_with_retry_after(
    saq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, connection: redis.Redis
) -> None:
    monkeypatch.setenv("MAX_QUEUE_DEPTH", "3")
    async with running_api() as client:
        accepted = [await client.post("/chat", json={"query": f"q{i}"}) for i in range(3)]
        refused = await client.post("/chat", json={"query": "one too many"})

    assert [response.status_code for response in accepted] == [202, 202, 202]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert connection.llen(SaqKeys(TEST_QUEUE).queued) == 3


async def test_probes_name_the_queue(api: httpx.AsyncClient) -> None:
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["queue"] == TEST_QUEUE


# ---- failures, retries, dead letters ---------------------------------------------------------------------


async def test_llm_failure_fails_the_job_with_a_readable_error(
    api: httpx.AsyncClient, saq_env: dict[str, str], mock_server: MockServer
) -> None:
    mock_server.configure(error_rate=1.0)
    job_id = await submit(api)

    run_burst_worker(saq_env)

    body = await status(api, job_id, wait=5)
    assert body["status"] == "failed"
    assert body["result"] is None
    error = body["error"]
    assert error.startswith("UpstreamUnavailable: embed: the LLM upstream failed (50"), error
    assert "\n" not in error and "Traceback" not in error


async def test_a_transient_failure_is_retried_by_saq_and_then_finishes(
    saq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, mock_server: MockServer, tmp_path: Path
) -> None:
    """JOB_MAX_RETRIES=2: the first attempt meets a 5xx; the worker's retry (SAQ's backoff) finds the
    upstream healthy again and the job finishes, with two attempts."""
    monkeypatch.setenv("JOB_MAX_RETRIES", "2")
    env = {**saq_env, "JOB_MAX_RETRIES": "2"}
    mock_server.reset_stats()
    mock_server.configure(error_rate=1.0)
    async with running_api() as client:
        job_id = await submit(client)
        workers = start_workers(env, tmp_path, 1)
        try:
            await asyncio.to_thread(
                wait_for, lambda: mock_server.stats()["errors"] >= 1, 60, "a failed attempt"
            )
            mock_server.configure(error_rate=0.0)
            body = await status(client, job_id, wait=LONG_WAIT_S)
            if body["status"] != "finished":  # the backoff is random (≤ 10 s); one more wait covers it
                body = await status(client, job_id, wait=LONG_WAIT_S)
            metrics = (await client.get("/metrics")).text
        finally:
            for worker in workers:
                worker.stop()

    assert body["status"] == "finished", body
    connection = redis.Redis.from_url(env["REDIS_URL"])
    stored = stored_job(connection, job_id)
    connection.close()
    assert stored["attempts"] == 2
    assert 'ragload_jobs_accepted_total{engine="saq"}' in metrics  # this process's count: earlier tests too


async def test_a_permanent_failure_is_dead_lettered_at_once_and_requeued_by_the_dlq_command(
    saq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing index is permanent (system/retry_policy.py): no retry although 3 are left; the job is in
    `ragload dlq --engine saq list`; `requeue` brings it back, and a worker with the index finishes it."""
    monkeypatch.setenv("JOB_MAX_RETRIES", "3")
    env = {**saq_env, "JOB_MAX_RETRIES": "3"}
    async with running_api() as client:
        job_id = await submit(client)
        run_burst_worker({**env, "QDRANT_COLLECTION": "no-such-index"})
        failed = await status(client, job_id)
        listed = dlq(env, "list")
        shown = dlq(env, "show", job_id)
        requeued = dlq(env, "requeue", job_id)
        queued_again = await status(client, job_id)
        run_burst_worker(env)
        finished = await status(client, job_id)
        after = dlq(env, "list")

    assert failed["status"] == "failed" and failed["error"].startswith("IndexMissing"), failed
    assert job_id in listed and "attempts=1" in listed
    assert "Traceback" in shown
    assert job_id in requeued
    assert queued_again["status"] == "queued"
    assert finished["status"] == "finished"
    assert job_id not in after


async def test_a_job_past_its_timeout_is_cancelled_and_fails_with_a_readable_error(
    saq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, mock_server: MockServer
) -> None:
    """JOB_TIMEOUT_S=1 and a chat call of 5 s: SAQ cancels the attempt at its timeout (no retry left)."""
    monkeypatch.setenv("JOB_TIMEOUT_S", "1")
    mock_server.configure(chat_latency="const:5000ms")
    async with running_api() as client:
        job_id = await submit(client)
        run_burst_worker(saq_env)
        body = await status(client, job_id)

    assert body["status"] == "failed"
    assert body["error"] == "JobTimeout: the job ran longer than its timeout (1 s)"


async def test_purge_empties_the_dead_letter_queue(
    api: httpx.AsyncClient, saq_env: dict[str, str], mock_server: MockServer
) -> None:
    mock_server.configure(error_rate=1.0)
    job_ids = [await submit(api) for _ in range(2)]
    run_burst_worker(saq_env)  # JOB_MAX_RETRIES=0: out of retries at the first 5xx

    assert all(job_id in dlq(saq_env, "list") for job_id in job_ids)
    assert "purged 2 job(s)" in dlq(saq_env, "purge")
    assert "0 job(s)" in dlq(saq_env, "list")


def dlq(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ragload_command("dlq", "--engine", "saq", *args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# ---- kill-safety -----------------------------------------------------------------------------------------


def test_a_sigkilled_workers_jobs_are_retried_on_another_within_30_s(
    saq_env: dict[str, str],
    connection: redis.Redis,
    mock_server: MockServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two worker processes; jobs whose chat call takes 4 s; the process holding them is SIGKILLed mid-job.
    The other worker's sweep finds them without heartbeats and SAQ retries them there: every job finishes,
    the killed ones within RETRY_BOUND_S of the kill. SAQ retries a swept job only while it has attempts
    left, so this test gives one retry (JOB_MAX_RETRIES=1; the default is 2)."""
    monkeypatch.setenv("JOB_MAX_RETRIES", "1")  # the API sets a job's retries when it enqueues it
    env = {**saq_env, "JOB_MAX_RETRIES": "1"}
    mock_server.configure(chat_latency="const:4000ms")
    workers = start_workers(env, tmp_path, 2, concurrency=4)
    try:
        wait_for(
            lambda: len(registered_workers(connection, TEST_QUEUE)) == 2, REGISTER_TIMEOUT_S, "2 workers"
        )
        job_ids = asyncio.run(_submit_many(env, 4))

        def stored(job_id: str) -> dict[str, Any]:
            return stored_job(connection, job_id)

        wait_for(lambda: all(stored(j).get("status") == "active" for j in job_ids), 60, "all jobs to start")
        by_worker: dict[str, list[str]] = {}
        for job_id in job_ids:
            by_worker.setdefault(stored(job_id)["worker_id"], []).append(job_id)
        victim_id, victim_jobs = max(by_worker.items(), key=lambda item: len(item[1]))
        victim_pid = next(
            w.pid for w in registered_workers(connection, TEST_QUEUE) if w.worker_id == victim_id
        )
        assert victim_pid is not None
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        mock_server.configure(chat_latency="const:0ms")

        wait_for(
            lambda: all(stored(j).get("status") == "complete" for j in job_ids),
            RETRY_BOUND_S + 10,
            "every job to finish",
        )
        recovered_in = time.monotonic() - killed_at
    finally:
        for worker in workers:
            worker.stop()

    for job_id in victim_jobs:
        assert stored(job_id)["attempts"] == 2, stored(job_id)  # the killed attempt, then the retry
        assert stored(job_id)["worker_id"] != victim_id
    assert recovered_in < RETRY_BOUND_S


async def _submit_many(env: dict[str, str], n: int) -> list[str]:
    async with running_api() as client:
        return [await submit(client) for _ in range(n)]


# ---- metrics ---------------------------------------------------------------------------------------------


async def test_metrics_have_the_same_names_with_engine_saq(
    api: httpx.AsyncClient, saq_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's series reach the API's /metrics through the multiprocess directory, as for RQ."""
    job_id = await submit(api)
    run_burst_worker({**saq_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert (await status(api, job_id))["status"] == "finished"

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from system.rag.prometheus import render_metrics

    merged = render_metrics([]).decode()
    text = (await api.get("/metrics")).text

    assert 'ragload_jobs_total{engine="saq",outcome="finished"} 1.0' in merged
    assert 'ragload_job_run_seconds_count{engine="saq"} 1.0' in merged
    assert 'ragload_broker_up{engine="saq"} 1.0' in text
    assert 'ragload_queue_depth{engine="saq"} 0.0' in text
    assert 'ragload_registry_jobs{engine="saq",registry="failed"} 0.0' in text


async def test_a_sighting_from_a_jobs_earlier_pass_does_not_sweep_it_when_it_starts_again(
    saq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep leaves a dequeued job that is not yet ACTIVE alone for STARTING_GRACE_S. A first sighting
    left from the job's earlier pass through the active list (it failed and was re-queued before any sweep
    dropped the sighting) must not count: seen under load, a re-queued job was swept as it started."""
    redis_client = AsyncRedis.from_url(saq_env["REDIS_URL"])
    rag_queue = saq_queue.RagQueue(redis_client, TEST_QUEUE)
    try:
        job = Job(function="process_query", queue=rag_queue, key=uuid.uuid4().hex, status=Status.QUEUED)
        job.queued = job.touched = 1_000
        job_id = rag_queue.job_id(job.key)
        await redis_client.set(job_id, rag_queue.serialize(job))
        await redis_client.lpush(rag_queue.keys.active, job_id)  # dequeued, not yet marked ACTIVE
        stale = f"999:999:0|{(time.time() - 3600) * 1000}"  # an hour-old sighting of another pass
        await redis_client.hset(rag_queue.keys.first_seen, job_id, stale)

        assert await rag_queue.sweep(lock=1) == []  # a new pass: its grace starts now
        await redis_client.delete(rag_queue.keys.sweep_lock)
        monkeypatch.setattr(saq_queue, "STARTING_GRACE_S", 0.0)
        assert await rag_queue.sweep(lock=1) == [job_id]  # the same pass past its grace: swept
    finally:
        await redis_client.aclose()
