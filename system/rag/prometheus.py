"""Prometheus plumbing shared by both architectures: latency buckets, multiprocess mode, exposition.

The API, its uvicorn processes and the RQ workers are separate processes (and so are the baseline's uvicorn
processes), so in the stack they write to one `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess
mode: the variable must be set, to an empty directory, *before* the process imports prometheus_client) and a
`/metrics` endpoint merges the files. Without the variable each process counts in memory (fine for tests and
a single process). What each side records: system/rag/llm_metrics.py (around every LLM call, both sides),
system/metrics.py (the queued system), sync_baseline/metrics.py (the baseline).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response


def _ensure_multiprocess_dir() -> None:
    """Create PROMETHEUS_MULTIPROC_DIR if it is set but missing: in multiprocess mode every metric opens its
    file there when it is constructed, and a missing directory would crash the import of the module that
    constructs it. Runs on import: every module that defines metrics imports this one first."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)


_ensure_multiprocess_dir()

# 5 ms (a cached embed) … 120 s (a job that waited behind a long backlog); one set for every latency.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


def prepare_multiprocess_dir(path: Path) -> dict[str, str]:
    """Create `path` empty (stale files of a previous run would be counted) and return the env entry
    to give the API and worker processes of one stack. Give the baseline a directory of its own."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(path)}


def build_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The registry to expose: every process's files in multiprocess mode, else this process's metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Delegate(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


class _Delegate(Collector):
    """Exposes another registry's metrics without registering our scrape-time collectors in the global one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


def render_metrics(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition of every metric plus the `extra` scrape-time collectors."""
    return bytes(generate_latest(build_registry(extra)))


def serve_metrics(port: int, addr: str = "0.0.0.0", extra: Iterable[Collector] = ()) -> None:
    """Serve `/metrics` from a background thread (a worker pod in Kubernetes shares no files with the API)."""
    start_http_server(port, addr=addr, registry=build_registry(extra))


def metrics_route(extra: Callable[[], Iterable[Collector]] = tuple) -> Callable[[Request], Any]:
    """A Starlette/FastAPI endpoint for `/metrics` (rendered off the event loop: it reads files and Valkey).

    `app.add_route("/metrics", metrics_route(lambda: [BrokerCollector(redis, queue, breaker_state)]))`.
    """

    async def endpoint(request: Request) -> Response:
        body = await anyio.to_thread.run_sync(render_metrics, extra())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint
