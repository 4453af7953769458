"""The queued API end to end: real app (ASGI), real Valkey, real `ragload worker` processes, real mock."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from rq.job import Job

from loadtests.stack.services import ragload_command
from system.rag.schemas import MAX_QUERY_CHARS
from system.settings import LONG_POLL_LIMIT_S
from tests.conftest import MockServer
from tests.system.conftest import TEST_QUEUE, RunWorkers, running_api

LONG_WAIT_S = 25.0  # a long-poll's `wait` that a test expects to be cut short

JSON_QUESTION = "How do I serialize an object to a JSON formatted string?"
PIPELINE_TIMINGS = {"embed", "retrieve", "llm", "total"}


async def submit(api: httpx.AsyncClient, query: str = JSON_QUESTION, top_k: int = 4) -> str:
    response = await api.post("/chat", json={"query": query, "top_k": top_k})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


async def status(api: httpx.AsyncClient, job_id: str, wait: float = 0) -> dict[str, Any]:
    response = await api.get("/job-status", params={"job_id": job_id, "wait": wait})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def queue_length(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(f"rq:queue:{TEST_QUEUE}"))
    finally:
        client.close()


async def test_submit_returns_202_with_a_uuid4_job_and_its_status_url(api: httpx.AsyncClient) -> None:
    response = await api.post("/chat", json={"query": JSON_QUESTION})

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"job_id", "status", "status_url"}
    assert body["status"] == "queued"
    assert uuid.UUID(body["job_id"]).version == 4
    assert response.headers["X-Job-ID"] == body["job_id"]
    followed = await api.get(body["status_url"])
    assert followed.status_code == 200
    assert followed.json() == {
        "job_id": body["job_id"],
        "status": "queued",
        "result": None,
        "error": None,
        "timings_ms": {},
    }


async def test_job_finishes_with_an_answer_from_the_corpus(
    api: httpx.AsyncClient, burst_workers: RunWorkers
) -> None:
    job_id = await submit(api, top_k=3)

    burst_workers()

    body = await status(api, job_id)
    assert body["status"] == "finished"
    assert body["error"] is None
    result = body["result"]
    assert result["answer"].startswith("According to [1]")
    assert len(result["sources"]) == 3
    assert result["sources"][0]["id"].startswith("json.")
    assert PIPELINE_TIMINGS <= set(body["timings_ms"]) and {"queue_wait", "run"} <= set(body["timings_ms"])
    assert body["timings_ms"]["run"] >= body["timings_ms"]["total"] > 0


async def test_long_poll_returns_as_soon_as_the_job_finishes(
    api: httpx.AsyncClient, queued_env: dict[str, str], redis_url: str
) -> None:
    job_id = await submit(api)
    worker = subprocess.Popen(
        ragload_command("worker", "--burst"),
        env={**os.environ, **queued_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        body = await status(api, job_id, wait=LONG_WAIT_S)
        answered_at = datetime.now(UTC)
        elapsed = time.monotonic() - started
    finally:
        worker.wait(timeout=60)

    assert body["status"] == "finished"
    connection = redis.Redis.from_url(redis_url)
    ended_at = Job.fetch(job_id, connection=connection).ended_at
    connection.close()
    assert ended_at is not None
    # Woken by the job's end, not by the wait limit (the worker starts in ~2 s, more on a busy machine):
    # answered a moment after the job ended, and before the wait ran out.
    assert (answered_at - ended_at).total_seconds() < LONG_WAIT_S / 5
    assert elapsed < LONG_WAIT_S


async def test_long_poll_gives_up_at_the_wait_limit_while_no_worker_runs(api: httpx.AsyncClient) -> None:
    job_id = await submit(api)

    started = time.monotonic()
    body = await status(api, job_id, wait=0.5)

    assert body["status"] == "queued"
    assert 0.4 < time.monotonic() - started < LONG_POLL_LIMIT_S / 2  # its own wait, not the API's cap


async def test_llm_failure_fails_the_job_with_a_readable_error(
    api: httpx.AsyncClient, burst_workers: RunWorkers, mock_server: MockServer
) -> None:
    mock_server.configure(error_rate=1.0)
    job_id = await submit(api)

    burst_workers()

    body = await status(api, job_id, wait=5)
    assert body["status"] == "failed"
    assert body["result"] is None
    error = body["error"]
    assert error.startswith("UpstreamUnavailable: embed: the LLM upstream failed (50")
    assert "\n" not in error and "Traceback" not in error
    assert "queue_wait" in body["timings_ms"]


BAD_BODIES: list[tuple[str, Any]] = [
    ("empty query", {"query": ""}),
    ("whitespace query", {"query": " \t\n "}),
    ("oversized query", {"query": "x" * (MAX_QUERY_CHARS + 1)}),
    ("top_k zero", {"query": "hi", "top_k": 0}),
    ("top_k too large", {"query": "hi", "top_k": 21}),
    ("query not a string", {"query": 42}),
    ("top_k as a string", {"query": "hi", "top_k": "3"}),
    ("top_k as a float", {"query": "hi", "top_k": 2.5}),
    ("top_k null", {"query": "hi", "top_k": None}),
    ("unknown field", {"query": "hi", "temperature": 0.2}),
    ("missing query", {}),
    ("array body", ["hi"]),
    ("null body", None),
]


@pytest.mark.parametrize("body", [body for _, body in BAD_BODIES], ids=[name for name, _ in BAD_BODIES])
async def test_bad_input_is_a_422_json_error_and_enqueues_nothing(
    api: httpx.AsyncClient, redis_url: str, body: Any
) -> None:
    response = await api.post("/chat", json=body)

    assert response.status_code == 422
    problems = response.json()["detail"]
    assert problems and all({"type", "loc", "msg"} <= set(problem) for problem in problems)
    assert queue_length(redis_url) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"query": "hi"', "application/json"),
        (b'{"query": "caf\xe9"}', "application/json"),
        (b"query=hi", "application/x-www-form-urlencoded"),
        (b"", ""),
    ],
    ids=["malformed json", "not utf-8", "form body", "no body"],
)
async def test_a_body_that_is_not_json_is_a_422(
    api: httpx.AsyncClient, redis_url: str, content: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.post("/chat", content=content, headers=headers)

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert queue_length(redis_url) == 0


async def test_a_query_of_exactly_the_limit_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post("/chat", json={"query": "x" * MAX_QUERY_CHARS, "top_k": 20})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "params",
    [{"job_id": "not-a-uuid"}, {"job_id": "1234"}, {}, {"job_id": str(uuid.uuid4()), "wait": -1},
     {"job_id": str(uuid.uuid4()), "wait": 31}, {"job_id": str(uuid.uuid4()), "wait": "soon"}],
    ids=["malformed", "short", "missing", "negative wait", "wait over 30 s", "wait not a number"],
)  # fmt: skip
async def test_malformed_status_requests_are_422(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await api.get("/job-status", params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_unknown_job_is_404(api: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    response = await api.get("/job-status", params={"job_id": unknown, "wait": 1})
    assert response.status_code == 404
    assert unknown in response.json()["detail"]


async def test_past_the_queue_bound_submissions_get_429_with_retry_after(
    queued_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("MAX_QUEUE_DEPTH", "3")
    from system.api import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            accepted = [await client.post("/chat", json={"query": f"q{i}"}) for i in range(3)]
            refused = await client.post("/chat", json={"query": "one too many"})

    assert [response.status_code for response in accepted] == [202, 202, 202]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "queue is full" in refused.json()["detail"]
    assert queue_length(redis_url) == 3


async def test_probes(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    await submit(api)
    metrics = (await api.get("/metrics")).text
    assert "ragload_jobs_accepted_total" in metrics
    assert 'ragload_queue_depth{engine="rq"} 1.0' in metrics


async def test_concurrent_long_polls_all_return(
    queued_env: dict[str, str], burst_workers: RunWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More waiters than redis-py's default pool of 100 connections: none may fail for want of one.

    Opening 150 connections at once (and their handshakes) takes longer than the API's 2 s broker timeouts
    when both cores are busy (checked: 503 "broker unreachable", "Timeout connecting to server"); those
    timeouts are not what this test is about, so they are raised here."""
    monkeypatch.setenv("REDIS_CONNECT_TIMEOUT_S", "30")
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT_S", "30")
    async with running_api() as api:
        job_ids = [await submit(api, query=f"question {i} about json") for i in range(5)]
        waits = [asyncio.create_task(status(api, job_ids[i % 5], wait=LONG_POLL_LIMIT_S)) for i in range(150)]
        await asyncio.sleep(0.5)  # the long-polls are blocked on their result streams now

        await asyncio.to_thread(burst_workers, "--count", "2")
        # Woken by the jobs' ends: every long-poll answers moments after the workers are done.
        bodies = await asyncio.wait_for(asyncio.gather(*waits), timeout=15)

    assert [body["status"] for body in bodies] == ["finished"] * 150


async def test_past_the_waiter_limit_a_long_poll_answers_at_once(
    queued_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONG_POLL_MAX_WAITERS", "0")
    from system.api import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            job_id = await submit(client)
            started = time.monotonic()
            body = await status(client, job_id, wait=LONG_WAIT_S)

    assert body["status"] == "queued"
    assert time.monotonic() - started < LONG_WAIT_S / 5  # at once, not at the end of its wait


async def test_request_paths_make_no_sync_broker_call(queued_env: dict[str, str]) -> None:
    """Everything the API does per request goes through redis.asyncio: the sync client (RQ's objects need
    one) is made unusable, and submit, status, long-poll and readiness still work."""
    from system.api import create_app

    def no_sync_io(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a sync Redis call on the event loop")

    app = create_app()
    async with app.router.lifespan_context(app):
        app.state.queued.engine.sync.connection_pool.get_connection = no_sync_io
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            job_id = await submit(client)
            assert (await status(client, job_id))["status"] == "queued"
            assert (await status(client, job_id, wait=0.2))["status"] == "queued"
            assert (await client.get("/readyz")).status_code == 200
