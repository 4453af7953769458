"""Start the baseline as a real `ragload baseline` process against the session's mock and test index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.stack.services import ManagedProcess, free_port, ragload_command

StartBaseline = Callable[..., str]


@pytest.fixture
def start_baseline(rag_env: dict[str, str], tmp_path: Path) -> Iterator[StartBaseline]:
    """`start_baseline("threadpool", "--threads", "4", env={...})` → the base URL of a ready baseline.

    One uvicorn process; every process started is stopped when the test ends. Its log is in tmp_path.
    Ready = `ready_path` answers 2xx (pass "/healthz" for a baseline that is meant not to be ready).
    """
    started: list[ManagedProcess] = []

    def start(mode: str, *flags: str, env: dict[str, str] | None = None, ready_path: str = "/readyz") -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = ManagedProcess(
            f"baseline-{mode}",
            ragload_command("baseline", "--mode", mode, "--port", str(port), "--processes", "1", *flags),
            env={**rag_env, **(env or {})},
            ready_url=f"{url}{ready_path}",
            log_path=tmp_path / f"baseline-{mode}-{port}.log",
        )
        started.append(process.start())
        process.wait_ready()
        return url

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http
