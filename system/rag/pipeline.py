"""The RAG pipeline: embed the question, take the top-k passages, ask the chat model with them.

`get_pipeline()` returns one Pipeline per process and settings, built on first use: the index is loaded
once and the HTTP connection pools are reused across calls. The cache is keyed by the process id, so a
forked child never reuses its parent's sockets or the search threads of its parent's shard (they do not
survive a fork): it builds its own on first use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import anyio.to_thread

from system.rag.errors import IndexMissing, RagError
from system.rag.llm import AsyncLLMClient, LLMClient
from system.rag.prompt import build_messages
from system.rag.schemas import MAX_TOP_K, RagResult, Source, Timings, Usage
from system.rag.settings import RagSettings
from system.rag.store import VectorStore
from system.rag.store_backend import index_exists as _store_index_exists
from system.rag.store_backend import open_store

T = TypeVar("T")


class Pipeline:
    """Thread-safe. `run` for sync callers (RQ workers, threadpool baseline), `arun` inside an event loop."""

    def __init__(self, settings: RagSettings, store: VectorStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self._llm: LLMClient | None = None
        # One async client per event loop: an async connection pool belongs to the loop that opened it.
        self._async_llms: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], AsyncLLMClient]] = {}
        self._lock = threading.Lock()

    def run(self, query: str, top_k: int = 4) -> RagResult:
        _check_top_k(top_k)
        store, llm = self.store(), self.llm()
        started = time.perf_counter()
        vector = llm.embed([query])[0]
        embedded = time.perf_counter()
        sources = store.search(vector, top_k)
        retrieved = time.perf_counter()
        answer = llm.chat(build_messages(query, sources))
        return _result(
            answer.text, sources, answer.usage, (started, embedded, retrieved, time.perf_counter())
        )

    async def arun(self, query: str, top_k: int = 4) -> RagResult:
        _check_top_k(top_k)
        store = self._store if self._store is not None else await anyio.to_thread.run_sync(self.store)
        llm = self.async_llm()
        started = time.perf_counter()
        vector = (await llm.embed([query]))[0]
        embedded = time.perf_counter()
        sources = await anyio.to_thread.run_sync(store.search, vector, top_k)
        retrieved = time.perf_counter()
        answer = await llm.chat(build_messages(query, sources))
        return _result(
            answer.text, sources, answer.usage, (started, embedded, retrieved, time.perf_counter())
        )

    def check(self) -> None:
        """Raise RagError (IndexMissing, UpstreamUnavailable…) unless the index is loaded and not empty."""
        if self.store().count() == 0:
            raise IndexMissing("the index is empty: run `ragload ingest`")

    def store(self) -> VectorStore:
        """The vector store, loaded on first use; a failure is not cached (a later call retries)."""
        return self._once("_store", lambda: open_store(self.settings))

    def llm(self) -> LLMClient:
        return self._once("_llm", lambda: LLMClient(self.settings))

    def async_llm(self) -> AsyncLLMClient:
        loop = asyncio.get_running_loop()
        entry = self._async_llms.get(id(loop))
        if entry is not None and entry[0]() is loop:
            return entry[1]
        with self._lock:
            self._async_llms = {key: e for key, e in self._async_llms.items() if _alive(e[0])}
            client = AsyncLLMClient(self.settings)
            self._async_llms[id(loop)] = (weakref.ref(loop), client)
        return client

    def close(self) -> None:
        """Close the sync HTTP client; async clients close with their event loop's end."""
        if self._llm is not None:
            self._llm.close()
        if self._store is not None:
            self._store.close()

    def _once(self, attribute: str, build: Callable[[], T]) -> T:
        value: T | None = getattr(self, attribute)
        if value is None:
            with self._lock:
                value = getattr(self, attribute)
                if value is None:
                    value = build()
                    setattr(self, attribute, value)
        return value


def _alive(loop_ref: weakref.ref[asyncio.AbstractEventLoop]) -> bool:
    loop = loop_ref()
    return loop is not None and not loop.is_closed()


def _check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be within 1..{MAX_TOP_K}, got {top_k}")


def _result(
    answer: str, sources: list[Source], usage: Usage, marks: tuple[float, float, float, float]
) -> RagResult:
    started, embedded, retrieved, answered = marks
    timings = Timings(
        embed=(embedded - started) * 1000,
        retrieve=(retrieved - embedded) * 1000,
        llm=(answered - retrieved) * 1000,
        total=(answered - started) * 1000,
    )
    return RagResult(answer=answer, sources=sources, usage=usage, timings_ms=timings)


# ---- one pipeline per process ----------------------------------------------------------------------------

_pipelines: dict[tuple[int, RagSettings], Pipeline] = {}
_pipelines_lock = threading.Lock()


def get_pipeline(settings: RagSettings | None = None) -> Pipeline:
    """The process's pipeline for these settings (default: from the environment), built on first call."""
    settings = settings or settings_from_env()
    key = (os.getpid(), settings)
    pipeline = _pipelines.get(key)
    if pipeline is None:
        with _pipelines_lock:
            pipeline = _pipelines.setdefault(key, Pipeline(settings))
    return pipeline


def warm_pipeline() -> None:
    """Load this process's pipeline before the first request; a missing index is logged, not raised,
    because the app's /readyz answers 503 for it."""
    try:
        get_pipeline().check()
    except RagError as exc:
        logging.getLogger(__name__).error("pipeline not ready: %s", exc)


def index_exists(settings: RagSettings | None = None) -> bool:
    try:
        return _store_index_exists(settings or settings_from_env())
    except RagError:
        return False


def settings_from_env() -> RagSettings:
    """RagSettings() costs ~0.3 ms (it scans the environment): reuse it while env is the same."""
    return _settings_for(tuple(os.environ.get(name) for name in _ENV_NAMES))


_ENV_NAMES = tuple(name.upper() for name in RagSettings.model_fields)


@lru_cache(maxsize=16)
def _settings_for(env: tuple[str | None, ...]) -> RagSettings:
    return RagSettings()
