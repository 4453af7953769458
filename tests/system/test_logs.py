"""JSON logs carry the job id: in a request (middleware + X-Job-ID header) and inside a real RQ job."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from system.engines.protocol import new_job_id
from system.logs import (
    JOB_ID_HEADER,
    JobIdMiddleware,
    bind_job_id,
    configure_logging,
    job_context,
    uvicorn_log_config,
)
from system.retry_policy import worker_options

log = logging.getLogger("ragload.test")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Route the root logger to a buffer in JSON for the test; restore the logging setup afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    foreign = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ("rq.worker", "rq")
    }
    buffer = io.StringIO()
    configure_logging("test-service", "INFO", stream=buffer)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate) in foreign.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_lines_are_json_with_service_and_job_id(lines: io.StringIO) -> None:
    log.info("outside")
    with job_context("job-1"):
        log.warning("inside %s", "a job")
    log.info("outside again")
    outside, inside, after = records(lines)
    assert inside["message"] == "inside a job"
    assert inside["job_id"] == "job-1" and inside["level"] == "WARNING"
    assert inside["service"] == "test-service" and inside["logger"] == "ragload.test"
    assert isinstance(inside["pid"], int) and "time" in inside
    assert outside["job_id"] is None and after["job_id"] is None


def test_uvicorn_log_config_gives_the_same_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logging.config.dictConfig(uvicorn_log_config("api", "info"))
        with job_context("job-9"):
            logging.getLogger("uvicorn.error").info("started server process")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines() if text.startswith("{")]
    assert line["service"] == "api" and line["logger"] == "uvicorn.error" and line["job_id"] == "job-9"


def log_from_a_job(query: str) -> str:
    log.info("answering %s", query)
    return "ok"


def test_lines_logged_inside_an_rq_job_carry_its_id(lines: io.StringIO, redis_url: str) -> None:
    connection = Redis.from_url(redis_url)
    queue = Queue("ragload-logs-test", connection=connection)
    job = queue.enqueue(log_from_a_job, "the question")
    SimpleWorker([queue], connection=connection).work(burst=True)
    connection.close()
    ours = [record for record in records(lines) if record["logger"] == "ragload.test"]
    assert [record["message"] for record in ours] == ["answering the question"]
    assert ours[0]["job_id"] == job.id  # from rq.get_current_job(): the job function did nothing for it
    assert any(record["logger"] == "rq.worker" for record in records(lines))  # RQ's lines are JSON too


def test_rq_lines_about_a_job_carry_its_id_but_not_the_question(lines: io.StringIO, redis_url: str) -> None:
    connection = Redis.from_url(redis_url)
    queue = Queue("ragload-logs-test", connection=connection)
    job = queue.enqueue(log_from_a_job, "a private question", job_id=new_job_id())
    SimpleWorker([queue], connection=connection, **worker_options()).work(burst=True)
    connection.close()
    rq_lines = [record for record in records(lines) if record["logger"].startswith("rq")]
    about_the_job = [record for record in rq_lines if job.id in record["message"]]
    assert len(about_the_job) >= 2  # dequeued, completed, …
    assert all(record["job_id"] == job.id for record in about_the_job)
    assert not any("a private question" in record["message"] for record in rq_lines)


def submit(request: Request) -> JSONResponse:  # sync: runs in a threadpool, in a copied context
    bind_job_id("3f2c9a")
    log.info("accepted")
    return JSONResponse({"job_id": "3f2c9a"}, status_code=202)


async def status(request: Request) -> JSONResponse:
    log.info("status asked")
    return JSONResponse({"status": "queued"})


async def health(request: Request) -> JSONResponse:
    log.info("health")
    return JSONResponse({"status": "ok"})


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(
        routes=[
            Route("/chat", submit, methods=["POST"]),
            Route("/job-status", status),
            Route("/healthz", health),
        ]
    )
    app.add_middleware(JobIdMiddleware)
    with TestClient(app) as test_client:
        yield test_client


def test_middleware_sets_header_and_log_field(lines: io.StringIO, client: TestClient) -> None:
    created = client.post("/chat")
    assert created.status_code == 202 and created.headers[JOB_ID_HEADER] == "3f2c9a"
    polled = client.get("/job-status", params={"job_id": "3f2c9a"})
    assert polled.headers[JOB_ID_HEADER] == "3f2c9a"
    plain = client.get("/healthz")
    assert JOB_ID_HEADER not in plain.headers  # no job, no header: nothing leaks from the request before

    by_message = {
        record["message"]: record for record in records(lines) if record["logger"] == "ragload.test"
    }
    assert by_message["accepted"]["job_id"] == "3f2c9a"
    assert by_message["status asked"]["job_id"] == "3f2c9a"
    assert by_message["health"]["job_id"] is None


def test_an_unsafe_job_id_is_never_echoed(client: TestClient) -> None:
    response = client.get("/job-status", params={"job_id": "x\r\nSet-Cookie: a=b"})
    assert JOB_ID_HEADER not in response.headers
