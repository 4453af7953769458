"""The queued API (`ragload api`): POST /chat enqueues a job on Valkey (RQ or SAQ, QUEUE_ENGINE), GET
/job-status reads or long-polls it. Contracts: docs/architecture.md, "HTTP contracts".

One code path for both engines: validation, admission, errors, durability and the long-poll are here; the
engine (system/engines/protocol.py) only enqueues, reads a job and waits for its end. The event loop never
waits on a sync call: both engines' I/O goes through redis.asyncio (system/broker.py says why and what it
measured for RQ), the index check of /readyz runs in a thread. Connections are made in the lifespan.
Errors: bad input (a body that is not JSON included) → 422 `{"detail": [problems]}`; queue full → 429,
broker unreachable or unable to confirm the job on disk (BROKER_DURABILITY=fsync) → 503, both with
Retry-After; unknown job → 404. Each route declares its errors in the OpenAPI schema with the models of
system/rag/http_errors.py, shared with the baseline.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread
import pybreaker
import uvicorn
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from system.durability import BrokerNotDurable
from system.engines.protocol import ApiEngine, JobView, PublicStatus, api_engine, new_job_id
from system.logs import JobIdMiddleware, bind_job_id, uvicorn_log_config
from system.metrics import ADMISSION_REJECTIONS, JOBS_ACCEPTED, BrokerCollector
from system.rag.breaker import shared_breaker_state, shared_breaker_state_async
from system.rag.errors import RagError
from system.rag.http_errors import (
    BAD_INPUT,
    documented_errors,
    error_response,
    install_error_handlers,
    rag_error_response,
)
from system.rag.pipeline import get_pipeline, warm_pipeline
from system.rag.prometheus import metrics_route
from system.rag.schemas import ChatRequest, RagResult
from system.settings import LONG_POLL_LIMIT_S, SystemSettings, load_settings

log = logging.getLogger(__name__)


class SubmitResponse(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"
    status_url: str


class Readiness(BaseModel):
    status: Literal["ready", "degraded"] = Field(description="degraded: the LLM breaker is open")
    queue: str
    llm_breaker: str = Field(description="the shared LLM circuit breaker: closed, half-open or open")


class JobStatusResponse(BaseModel):
    job_id: str
    status: PublicStatus
    result: RagResult | None = None
    error: str | None = None
    timings_ms: dict[str, float]


@dataclass
class ApiState:
    settings: SystemSettings
    engine: ApiEngine
    waiters: int = 0  # long-polls in progress (one event loop: no lock needed)


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.queued
    return state


def job_status_body(view: JobView) -> JobStatusResponse:
    return JobStatusResponse(
        job_id=view.job_id,
        status=view.status,
        result=RagResult.model_validate(view.result) if view.result is not None else None,
        error=view.error,
        timings_ms=view.timings_ms,
    )


# ---- routes ----------------------------------------------------------------------------------------------

router = APIRouter()

BROKER_DOWN = "The job broker (Valkey) is unreachable: nothing was done; try again after `Retry-After`"
READINESS_ERRORS = documented_errors(
    {
        502: "The vector index cannot be read (e.g. a Qdrant server rejected the request)",
        503: "Not ready: the index is missing or its store unreachable, or the job broker is unreachable",
        504: "The vector store (a Qdrant server) did not answer in time",
    }
)


@router.post(
    "/chat",
    status_code=202,
    response_model=SubmitResponse,
    responses=documented_errors(
        {
            422: BAD_INPUT,
            429: "The queue is full (MAX_QUEUE_DEPTH jobs waiting): nothing was enqueued",
            503: BROKER_DOWN,
        }
    ),
)
async def chat(body: ChatRequest, request: Request) -> SubmitResponse | JSONResponse:
    state = _state(request)
    # A soft bound: depth check and enqueue are two round trips, so concurrent submits may overshoot it by
    # the number in flight. Back-pressure needs no more, and a Lua script would bypass RQ's own enqueue.
    depth = await state.engine.queue_depth()
    if depth >= state.settings.max_queue_depth:
        ADMISSION_REJECTIONS.labels(state.engine.name, "queue_full").inc()
        detail = f"the queue is full ({depth} jobs waiting): try again later"
        return error_response(429, detail, retry_after_s=state.settings.queue_full_retry_after_s)
    job_id = new_job_id()
    bind_job_id(job_id)
    await state.engine.enqueue(job_id, body.query, body.top_k)
    JOBS_ACCEPTED.labels(state.engine.name).inc()
    log.info("job accepted (top_k=%d, %d chars, %d waiting before it)", body.top_k, len(body.query), depth)
    status_url = request.url_for("job_status").include_query_params(job_id=job_id)
    return SubmitResponse(job_id=job_id, status_url=str(status_url))


@router.get(
    "/job-status",
    name="job_status",
    response_model=JobStatusResponse,
    responses=documented_errors(
        {
            404: "No such job: never submitted, or its result has expired (RESULT_TTL_S)",
            422: BAD_INPUT,
            503: BROKER_DOWN,
        }
    ),
)
async def job_status(
    request: Request,
    job_id: uuid.UUID,
    wait: float = Query(default=0.0, ge=0, le=LONG_POLL_LIMIT_S, description="seconds to long-poll"),
) -> JobStatusResponse | JSONResponse:
    state = _state(request)
    key = str(job_id)
    view = await state.engine.job(key)
    if view is None:
        return error_response(404, f"no job {key} (never submitted, or its result has expired)")
    wait_s = min(wait, state.settings.long_poll_max_s)
    if wait_s > 0 and not view.ended:
        view = await _long_poll(state, view, wait_s)
    return job_status_body(view)


async def _long_poll(state: ApiState, view: JobView, wait_s: float) -> JobView:
    """The job once it has ended, or as it was after `wait_s`; at once past the waiter limit."""
    if state.waiters >= state.settings.long_poll_max_waiters:
        return view
    state.waiters += 1
    try:
        return await state.engine.wait_for_end(view, wait_s)
    finally:
        state.waiters -= 1


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=READINESS_ERRORS)
async def readyz(request: Request) -> Readiness | JSONResponse:
    state = _state(request)
    await state.engine.ping()
    try:
        await anyio.to_thread.run_sync(get_pipeline().check)  # loads the index on the first call
    except RagError as exc:
        return rag_error_response(exc)
    if state.settings.broker_durability == "fsync":
        await state.engine.confirm_on_disk()  # BrokerNotDurable: not ready, submits would get 503
    breaker = await shared_breaker_state_async(state.engine.commands)
    # An open LLM breaker keeps 200: /chat still accepts jobs, which wait or are retried until it closes.
    status: Literal["ready", "degraded"] = "degraded" if breaker == pybreaker.STATE_OPEN else "ready"
    return Readiness(status=status, queue=state.settings.queue_name, llm_breaker=breaker)


async def _on_broker_error(request: Request, exc: Exception) -> JSONResponse:
    state = _state(request)
    if request.url.path == "/chat":
        ADMISSION_REJECTIONS.labels(state.engine.name, "broker_down").inc()
    log.warning("broker unreachable on %s: %s", request.url.path, exc)
    return error_response(
        503, "the job broker is unreachable", retry_after_s=state.settings.broker_retry_after_s
    )


async def _on_not_durable(request: Request, exc: Exception) -> JSONResponse:
    state = _state(request)
    if request.url.path == "/chat":
        ADMISSION_REJECTIONS.labels(state.engine.name, "not_durable").inc()
    log.warning("%s: %s", request.url.path, exc)
    detail = f"{exc}: jobs are accepted only once on disk (BROKER_DURABILITY=fsync)"
    return error_response(503, detail, retry_after_s=state.settings.broker_retry_after_s)


async def log_durability(settings: SystemSettings, engine: ApiEngine) -> None:
    """One line at start: what a 202 survives with this broker."""
    if settings.broker_durability == "none":
        log.warning(
            "broker durability: none (BROKER_DURABILITY=none): POST /chat answers 202 once the job is in the "
            "broker's memory; a broker crash can lose accepted jobs"
        )
        return
    try:
        await engine.confirm_on_disk()
    except BrokerNotDurable as exc:
        log.error(
            "broker durability: fsync, but %s: POST /chat answers 503 until the broker keeps an append-only "
            "file (appendonly yes); or set BROKER_DURABILITY=none to accept jobs without that guarantee",
            exc,
        )
        return
    except RedisError as exc:
        log.warning("broker durability: fsync; cannot check the broker now (%s)", exc)
        return
    log.info(
        "broker durability: fsync: POST /chat answers 202 only once the job is in the broker's append-only "
        "file on disk (WAITAOF); a broker crash loses no accepted job"
    )


# ---- app -------------------------------------------------------------------------------------------------


def _lifespan(settings: SystemSettings | None) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or load_settings()
        app.state.queued = ApiState(resolved, api_engine(resolved))
        log.info("queue engine: %s", resolved.queue_engine)
        await log_durability(resolved, app.state.queued.engine)
        await anyio.to_thread.run_sync(warm_pipeline)
        try:
            yield
        finally:
            await app.state.queued.engine.aclose()

    return lifespan


def create_app(settings: SystemSettings | None = None) -> FastAPI:
    """The app; `settings` default to the environment, read when the app starts (not at import)."""
    app = FastAPI(title="ragload queued API", lifespan=_lifespan(settings))
    install_error_handlers(app)
    app.add_exception_handler(RedisError, _on_broker_error)
    app.add_exception_handler(BrokerNotDurable, _on_not_durable)
    app.add_middleware(JobIdMiddleware)
    app.include_router(router)

    def collectors() -> Iterable[Collector]:
        state: ApiState = app.state.queued
        sync = state.engine.sync
        breaker = lambda: shared_breaker_state(sync)  # noqa: E731
        return [BrokerCollector(sync, state.settings.queue_name, breaker, state.engine.name)]

    app.add_route("/metrics", metrics_route(collectors), include_in_schema=False)
    return app


app = create_app()  # for `uvicorn system.api:app`


# ---- command ---------------------------------------------------------------------------------------------

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
KEEP_ALIVE_S = 75  # uvicorn closes idle connections after 5 s by default; a client reusing one just then sees
# "connection closed" (seen in open-loop cells), so idle keep-alives outlast any gap between requests


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--processes", type=int, default=1, help="uvicorn worker processes (1)")
    parser.add_argument("--redis-url", help="default: $REDIS_URL")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (costs CPU under load)")


def main(args: argparse.Namespace) -> int:
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url  # uvicorn's worker processes read it too
    try:
        load_settings()
    except ValidationError as exc:
        print(f"ragload api: invalid settings (is REDIS_URL set?)\n{exc}", file=sys.stderr)
        return 2
    if args.processes < 1:
        print("ragload api: --processes must be >= 1", file=sys.stderr)
        return 2
    uvicorn.run(
        "system.api:app",
        host=args.host,
        port=args.port,
        workers=args.processes,
        log_config=uvicorn_log_config("api", args.log_level),
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return 0
