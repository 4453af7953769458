"""Settings of the synchronous baseline, read from the environment (prefix BASELINE_).

`ragload baseline` writes its flags into these variables before it starts uvicorn, so that every worker
process (uvicorn spawns them) builds the same app. The RAG core has its own (system/rag/settings.py).
"""

from __future__ import annotations

import enum

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# AnyIO's own default thread limiter size: what a FastAPI `def` endpoint gets when nobody sets it.
DEFAULT_THREADS = 40
# The client deadline of the load tests (docs/architecture.md, "Measurement rules"): answering 504 later
# than this helps nobody.
DEFAULT_REQUEST_TIMEOUT_S = 30.0


class Mode(enum.StrEnum):
    """How requests are served; the pipeline is the same in all three."""

    THREADPOOL = "threadpool"  # `def` endpoint in AnyIO's thread pool, sync pipeline
    BLOCKING = "blocking"  # `async def` endpoint calling the sync pipeline: the common mistake, on purpose
    ASYNCIO = "asyncio"  # `async def` endpoint awaiting the async pipeline


class BaselineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASELINE_", frozen=True, extra="ignore")

    mode: Mode = Mode.THREADPOOL
    processes: int = Field(default=1, ge=1)
    threads: int = Field(default=DEFAULT_THREADS, ge=1)
    # Whole-request deadline on /chat: past it the client gets 504 (the upstream call may still run on in a
    # thread; only `asyncio` mode cancels it). It cannot fire in `blocking` mode, whose event loop is stuck
    # inside the call: there only the LLM client's own timeout (LLM_TIMEOUT_S) ends a hung request.
    request_timeout_s: float = Field(default=DEFAULT_REQUEST_TIMEOUT_S, gt=0)

    @property
    def expected_concurrency(self) -> int | None:
        """Requests this deployment serves at once; None where only the upstream bounds it (asyncio)."""
        if self.mode is Mode.BLOCKING:
            return self.processes
        if self.mode is Mode.THREADPOOL:
            return self.processes * self.threads
        return None
