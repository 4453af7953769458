"""One real run of each chat scenario: Locust headless for ~3 s against a small real stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.stack.embedded_stack import EmbeddedStack
from loadtests.stack.services import free_port
from loadtests.sweep.locust_process import LocustRun
from loadtests.sweep.profile import Cell
from loadtests.sweep.run_folder import collect
from loadtests.sweep.summary import summarize
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


def cell(architecture: str, mode: str, load: str, users: int | None, rate: float | None) -> Cell:
    return Cell(
        index=1,
        cell_id=f"smoke-{architecture}",
        architecture=architecture,
        mode=mode,
        load=load,
        workers=1 if architecture == "queued" else None,
        users=users,
        rate=rate,
        duration_s=2.5,
        warmup_s=0.5,
        deadline_s=5.0,
        service_time_ms=21.0,
        concurrency=4 if architecture == "sync" else None,
    )


def run(the_cell: Cell, host: str, tmp_path: Path) -> dict[str, object]:
    locust = LocustRun(the_cell, host, tmp_path / "raw", tmp_path / "locust.log", seed=3)
    locust.start()
    locust.wait()
    data = collect(the_cell, tmp_path / "raw", [], fallback_start=locust.started)
    kinds = {(s.kind, s.outcome) for s in data.samples}
    assert ("e2e", "ok") in kinds and ("probe", "ok") in kinds, (tmp_path / "locust.log").read_text()
    assert all(0.5 <= s.t <= 3.0 for s in data.samples)
    return summarize(the_cell, data.samples, completed_ok=data.completed_ok)


def test_queued_and_sync_users_write_samples(small_stack: EmbeddedStack, tmp_path: Path) -> None:
    queued = run(cell("queued", "longpoll", "closed", 2, None), small_stack.urls["api"], tmp_path / "q")
    assert queued["requests"] and queued["timeouts"] == 0 and queued["errors"] == 0
    assert queued["submit_p99_ms"] is not None and queued["mean_run_ms"] is not None
    assert queued["mean_polls"] is not None and queued["mean_polls"] >= 1  # type: ignore[operator]

    sync = run(cell("sync", "threadpool", "open", None, 20.0), small_stack.urls["baseline"], tmp_path / "s")
    # Poisson arrivals at 20/s over the 2.5 s window: about 50 requests, independent of response times
    assert 20 <= sync["requests"] <= 90  # type: ignore[operator]
    assert sync["errors"] == 0 and sync["pool_exhausted"] is False
