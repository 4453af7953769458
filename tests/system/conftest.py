"""Fixtures of the queued system's tests: the API in-process (ASGI) and real RQ workers in burst mode."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from loadtests.stack.services import ragload_command

TEST_QUEUE = "ragload-test"
WORKER_TIMEOUT_S = 90  # a burst worker starts (imports, index) in a second or two and runs a few jobs


@pytest.fixture
def queued_env(redis_url: str, rag_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the API and the workers: the session's Valkey (emptied), mock and index.

    No job retries (JOB_MAX_RETRIES=0), so that an LLM failure fails the job at once. Set in this process too
    (monkeypatch), so that an app created after this fixture reads it.
    """
    env = {**rag_env, "REDIS_URL": redis_url, "QUEUE_NAME": TEST_QUEUE, "JOB_MAX_RETRIES": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return env


@asynccontextmanager
async def running_api() -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real app (lifespan included) over ASGI; the app reads this process's environment."""
    from system.api import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@pytest.fixture
async def api(queued_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real app; the app reads the env of `queued_env`."""
    async with running_api() as client:
        yield client


RunWorkers = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def burst_workers(queued_env: dict[str, str]) -> RunWorkers:
    """`run(*extra_args)`: run `ragload worker --burst …` until the queue is empty; returns the process."""

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ragload_command("worker", "--burst", *extra),
            env={**os.environ, **queued_env},
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return run
