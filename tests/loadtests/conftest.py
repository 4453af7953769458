"""A small real stack for the harness tests that drive Locust against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.stack.embedded_stack import EmbeddedStack
from loadtests.stack.services import free_port
from tests.conftest import MockServer


@pytest.fixture
def small_stack(
    rag_env: dict[str, str], redis_url: str, mock_server: MockServer, tmp_path: Path
) -> Iterator[EmbeddedStack]:
    mock_server.configure(chat_latency="const:20ms", embed_latency="const:1ms")
    stack = EmbeddedStack(
        api_port=free_port(),
        baseline_port=free_port(),
        workers=1,
        baseline_mode="threadpool",
        baseline_threads=4,
        env={**rag_env, "REDIS_URL": redis_url},
        log_dir=tmp_path / "logs",
    )
    with stack:
        yield stack
