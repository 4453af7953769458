"""The baseline's FastAPI app: the RAG pipeline answered inline, served in one of three modes.

Only the way `/chat` is served differs between the modes; the pipeline is the RAG core's, unchanged.
- threadpool: a `def` endpoint; FastAPI runs it in AnyIO's thread pool, whose size is set at startup, so one
  process serves `threads` requests at once.
- blocking: an `async def` endpoint that calls the sync pipeline. THE COMMON MISTAKE, KEPT ON PURPOSE: the
  call blocks the event loop, so one process serves one request at a time (and even /healthz waits).
- asyncio: an `async def` endpoint awaiting the async pipeline; only the upstream bounds concurrency.

`/readyz` reports this process's LLM breaker (503 with Retry-After while it is open: /chat fails fast then);
`/metrics` exposes the requests, LLM calls and breaker states of all the baseline's processes
(sync_baseline/metrics.py). Every error a route can answer is declared in the OpenAPI schema with the
models the queued API uses (system/rag/http_errors.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import pybreaker
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sync_baseline.deadline import RequestDeadline
from sync_baseline.metrics import RequestMetrics, forget_this_process, metrics_endpoint, track_breaker
from sync_baseline.settings import BaselineSettings, Mode
from system.rag.breaker import breaker_status, configure_breaker
from system.rag.errors import RagError
from system.rag.http_errors import (
    BAD_INPUT,
    documented_errors,
    install_error_handlers,
    rag_error_response,
    retry_after_header,
)
from system.rag.pipeline import get_pipeline, warm_pipeline
from system.rag.schemas import ChatRequest, RagResult

logger = logging.getLogger(__name__)

MODE_NOTES: dict[Mode, str] = {
    Mode.THREADPOOL: "def endpoint in a thread pool of `threads` threads per process",
    Mode.BLOCKING: (
        "THE COMMON MISTAKE, KEPT ON PURPOSE: async def endpoint calling the sync pipeline blocks the event "
        "loop, one request at a time per process"
    ),
    Mode.ASYNCIO: "async def endpoint awaiting the async pipeline; concurrency bounded by the upstream only",
}


def threadpool_chat(request: ChatRequest) -> RagResult:
    return get_pipeline().run(request.query, request.top_k)


async def blocking_chat(request: ChatRequest) -> RagResult:
    # Deliberately wrong (see the module docstring): a sync, network-bound call inside `async def`.
    return get_pipeline().run(request.query, request.top_k)


async def asyncio_chat(request: ChatRequest) -> RagResult:
    return await get_pipeline().arun(request.query, request.top_k)


class Readiness(BaseModel):
    status: str = Field(description="ready; `unavailable` in the 503 while the LLM breaker is open")
    mode: Mode
    processes: int
    threads: int
    concurrency: int | None = Field(description="requests served at once; null: bounded by the upstream only")
    note: str
    llm_breaker: str = Field(description="this process's LLM circuit breaker: closed, half-open or open")


UPSTREAM_ERRORS = {
    502: "The LLM upstream or the vector store refused the request, or answered something unusable",
    503: (
        "The LLM upstream is unavailable or rate-limited, this process's LLM breaker is open, or the index "
        "is missing: try again after `Retry-After`"
    ),
    504: "No answer within the request deadline (REQUEST_TIMEOUT_S), or the upstream timed out",
}
CHAT_ERRORS = documented_errors({422: BAD_INPUT, **UPSTREAM_ERRORS})
READINESS_ERRORS = documented_errors(
    {
        502: "The vector index cannot be read",
        503: (
            "Not ready: the index is missing or its store unreachable (`detail`), or this process's LLM "
            "breaker is open (`detail` plus the fields of the 200 answer, `status` = unavailable)"
        ),
        504: "The vector store (a Qdrant server) did not answer in time",
    }
)


CHAT_ENDPOINTS: dict[Mode, Callable[[ChatRequest], Any]] = {
    Mode.THREADPOOL: threadpool_chat,
    Mode.BLOCKING: blocking_chat,
    Mode.ASYNCIO: asyncio_chat,
}


def describe(settings: BaselineSettings) -> dict[str, Any]:
    """What /readyz reports, so that a report can label the baseline with its expected concurrency."""
    return {
        "mode": settings.mode.value,
        "processes": settings.processes,
        "threads": settings.threads,
        "concurrency": settings.expected_concurrency,
        "note": MODE_NOTES[settings.mode],
    }


def reported_breaker_state() -> tuple[str, float]:
    """This process's breaker state for /readyz, and the seconds until it lets a trial call through.

    pybreaker leaves the state `open` until the next call, even past its reset timeout. Reported as such, an
    open breaker would keep readiness at 503, a load balancer would send no more requests, and no trial call
    would ever close it: past the reset timeout the next call is a trial, so report `half-open` (ready).
    """
    status = breaker_status()
    if status.state == pybreaker.STATE_OPEN and status.retry_after_s <= 0:
        return pybreaker.STATE_HALF_OPEN, 0.0
    return status.state, status.retry_after_s


def _probes(settings: BaselineSettings) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", response_model=Readiness, responses=READINESS_ERRORS)
    async def readyz() -> dict[str, Any] | JSONResponse:
        try:
            get_pipeline().check()
        except RagError as exc:
            return rag_error_response(exc)
        breaker, retry_after_s = reported_breaker_state()
        facts = {**describe(settings), "llm_breaker": breaker}
        if breaker == pybreaker.STATE_OPEN:
            # /chat fails fast with 503 while the breaker is open: so does readiness, for the same time.
            body = {"status": "unavailable", "detail": "the LLM circuit breaker is open", **facts}
            return JSONResponse(body, status_code=503, headers=retry_after_header(retry_after_s))
        return {"status": "ready", **facts}

    return router


def _lifespan(settings: BaselineSettings) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        facts = describe(settings)
        log = logger.warning if settings.mode is Mode.BLOCKING else logger.info
        log(
            "baseline mode=%s processes=%d threads=%d expected concurrency=%s (%s)",
            facts["mode"],
            facts["processes"],
            facts["threads"],
            facts["concurrency"] if facts["concurrency"] is not None else "upstream-bound",
            facts["note"],
        )
        track_breaker(configure_breaker(None))  # per process, in memory (system/rag/breaker.py says why)
        warm_pipeline()
        try:
            yield
        finally:
            forget_this_process()

    return lifespan


def create_app(settings: BaselineSettings | None = None) -> FastAPI:
    settings = settings or BaselineSettings()
    app = FastAPI(title="ragload sync baseline", lifespan=_lifespan(settings))
    install_error_handlers(app)
    app.add_middleware(RequestDeadline, timeout_s=settings.request_timeout_s, paths={"/chat"})
    app.add_middleware(RequestMetrics, paths={"/chat"})  # outside the deadline: a 504 counts as a timeout
    app.include_router(_probes(settings))
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_api_route("/chat", CHAT_ENDPOINTS[settings.mode], methods=["POST"], responses=CHAT_ERRORS)
    return app
