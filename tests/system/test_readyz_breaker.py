"""The queued API's /readyz reports the LLM breaker the workers share, opened by real failures of the mock."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import MockServer
from tests.system.conftest import RunWorkers
from tests.system.test_api import status, submit

RESET_TIMEOUT_S = 1.0


async def test_readyz_is_degraded_while_the_shared_breaker_is_open(
    api: httpx.AsyncClient,
    burst_workers: RunWorkers,
    mock_server: MockServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BREAKER_FAIL_MAX", "2")  # read by the worker processes
    monkeypatch.setenv("BREAKER_RESET_TIMEOUT_S", str(RESET_TIMEOUT_S))
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() | {"queue": None} == {"status": "ready", "queue": None, "llm_breaker": "closed"}

    mock_server.configure(error_rate=1.0)
    failing = [await submit(api) for _ in range(3)]
    burst_workers()
    assert [(await status(api, job_id))["status"] for job_id in failing] == ["failed"] * 3

    ready = await api.get("/readyz")
    assert ready.status_code == 200  # still accepting jobs
    assert ready.json()["status"] == "degraded" and ready.json()["llm_breaker"] == "open"
    assert (await api.post("/chat", json={"query": "accepted meanwhile"})).status_code == 202

    mock_server.configure(error_rate=0.0)
    await asyncio.sleep(RESET_TIMEOUT_S + 0.2)  # past the reset timeout the next call is a trial
    burst_workers()
    ready = await api.get("/readyz")
    assert ready.json()["status"] == "ready" and ready.json()["llm_breaker"] == "closed"
