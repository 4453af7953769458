"""The baseline's Prometheus `/metrics`: its /chat requests, its LLM calls and its per-process breaker.

- LLM latency and errors are the RAG core's own series (`ragload_llm_request_seconds`, `ragload_llm_errors`,
  `ragload_breaker_transitions`, system/rag/llm_metrics.py), recorded by `llm_guard` around every LLM call.
- `/chat` requests: `ragload_baseline_requests{outcome}` and `ragload_baseline_request_seconds{outcome}`,
  measured outside the request deadline, so a 504 counts as a timeout.
- `ragload_breaker_state{state}`: the breaker is per process here (system/rag/breaker.py), so the gauge is the
  number of baseline processes whose breaker is in that state (one process: 1 for its state, as on the API).

With more than one process (`--processes` > 1) uvicorn's processes each count on their own, so they write to
a shared PROMETHEUS_MULTIPROC_DIR (`ragload baseline` makes one if none is set) and any process's /metrics
merges every process's files. The baseline's series are created outside prometheus-client's global registry
(`registry=None`) so that they never show up on the queued API, which imports the same RAG core.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import pybreaker
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from system.rag.breaker import StateChangeListener
from system.rag.llm_metrics import BREAKER_STATES
from system.rag.prometheus import LATENCY_BUCKETS, render_metrics

REQUESTS = Counter(
    "ragload_baseline_requests", "Baseline /chat requests answered, by outcome", ["outcome"], registry=None
)
REQUEST_LATENCY = Histogram(
    "ragload_baseline_request_seconds", "Baseline /chat: request received → response sent, by outcome",
    ["outcome"], buckets=LATENCY_BUCKETS, registry=None,
)  # fmt: skip
# livesum: summed over the processes alive, so a process that exited (and was marked dead) drops out.
BREAKER_STATE = Gauge(
    "ragload_breaker_state", "Baseline processes whose LLM breaker is in this state", ["state"],
    multiprocess_mode="livesum", registry=None,
)  # fmt: skip
BASELINE_SERIES: tuple[Collector, ...] = (REQUESTS, REQUEST_LATENCY, BREAKER_STATE)


def outcome_of(status: int) -> str:
    """The outcome label of an HTTP status (a small fixed set, as the load tests count them)."""
    if status < 400:
        return "ok"
    if status == 503:
        return "unavailable"  # upstream down, breaker open, index missing
    if status == 504:
        return "timeout"
    if status < 500:
        return "bad_request"  # 4xx: the caller's input, not load shedding
    return "error"


class RequestMetrics:
    """Pure ASGI middleware: time and count the requests to `paths` by the status of their response."""

    def __init__(self, app: ASGIApp, paths: Iterable[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                outcome = outcome_of(status)
                REQUESTS.labels(outcome).inc()
                REQUEST_LATENCY.labels(outcome).observe(time.perf_counter() - started)

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()  # before the last write: a client that got its answer finds it counted
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            record()


def set_breaker_state(state: str) -> None:
    for name in BREAKER_STATES:
        BREAKER_STATE.labels(name).set(1 if name == state else 0)


def track_breaker(breaker: pybreaker.CircuitBreaker) -> None:
    """Keep `ragload_breaker_state` in step with this process's breaker from now on."""
    set_breaker_state(breaker.current_state)
    breaker.add_listener(StateChangeListener(set_breaker_state))


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def forget_this_process() -> None:
    """On shutdown: drop this process's live gauge files, so that the breaker gauge counts it no more."""
    if multiprocess():
        mark_process_dead(os.getpid())


def baseline_collectors() -> tuple[Collector, ...]:
    """The baseline's own series, unless the multiprocess files (which hold them) are rendered anyway."""
    return () if multiprocess() else BASELINE_SERIES


async def metrics_endpoint(request: Request) -> Response:
    """Rendered on the event loop, not in a thread: in threadpool mode the pool is what is under test, and a
    scrape must not queue behind /chat requests. Rendering reads a few small files (< 1 ms at this size)."""
    return Response(render_metrics(baseline_collectors()), media_type=CONTENT_TYPE_LATEST)
