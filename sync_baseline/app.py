"""The baseline's FastAPI app: the RAG pipeline answered inline, served in one of three modes.

Only the way `/chat` is served differs between the modes; the pipeline is the RAG core's, unchanged.
- threadpool: a `def` endpoint; FastAPI runs it in AnyIO's thread pool, whose size is set at startup, so one
  process serves `threads` requests at once.
- blocking: an `async def` endpoint that calls the sync pipeline. THE COMMON MISTAKE, KEPT ON PURPOSE: the
  call blocks the event loop, so one process serves one request at a time (and even /healthz waits).
- asyncio: an `async def` endpoint awaiting the async pipeline; only the upstream bounds concurrency.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from sync_baseline.deadline import RequestDeadline
from sync_baseline.settings import BaselineSettings, Mode
from system.rag.errors import RagError
from system.rag.http_errors import install_error_handlers, rag_error_response
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


def _probes(settings: BaselineSettings) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
    async def readyz() -> dict[str, Any] | JSONResponse:
        try:
            get_pipeline().check()
        except RagError as exc:
            return rag_error_response(exc)
        return {"status": "ready", **describe(settings)}

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
        warm_pipeline()
        yield

    return lifespan


def create_app(settings: BaselineSettings | None = None) -> FastAPI:
    settings = settings or BaselineSettings()
    app = FastAPI(title="ragload sync baseline", lifespan=_lifespan(settings))
    install_error_handlers(app)
    app.add_middleware(RequestDeadline, timeout_s=settings.request_timeout_s, paths={"/chat"})
    app.include_router(_probes(settings))
    app.add_api_route("/chat", CHAT_ENDPOINTS[settings.mode], methods=["POST"])
    return app
