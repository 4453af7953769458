"""Each mode serves as many requests at once as it claims: 8 parallel requests, 500 ms per chat call.

Behaviour tests, not speed tests: how many chat calls were in flight at once is read from the mock's own
high-water mark (1, 4 or 8), not guessed from the wall clock, which a slow or busy machine stretches. The
only time bound is a lower one that no machine can beat: r rounds of 0.5 s take at least r × 0.5 s.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import MockServer
from tests.sync_baseline.conftest import StartBaseline

PARALLEL_REQUESTS = 8
CHAT_LATENCY_S = 0.5


def _timed_burst(client: httpx.Client, url: str) -> tuple[float, list[int]]:
    def ask(i: int) -> int:
        return client.post(f"{url}/chat", json={"query": f"How to parse JSON? ({i})", "top_k": 2}).status_code

    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        started = time.perf_counter()
        statuses = list(pool.map(ask, range(PARALLEL_REQUESTS)))
        return time.perf_counter() - started, statuses


@pytest.mark.parametrize(
    ("mode", "flags", "concurrency", "rounds", "label"),
    [
        ("blocking", (), 1, 8, "COMMON MISTAKE"),  # one request at a time: 8 rounds of 0.5 s
        ("threadpool", ("--threads", "4"), 4, 2, "thread pool"),  # four at a time: 2 rounds
        ("asyncio", (), None, 1, "bounded by the upstream"),  # all eight at once: 1 round
    ],
)
def test_mode_serves_the_concurrency_it_claims(
    mode: str,
    flags: tuple[str, ...],
    concurrency: int | None,
    rounds: int,
    label: str,
    start_baseline: StartBaseline,
    mock_server: MockServer,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    url = start_baseline(mode, *flags)
    ready = client.get(f"{url}/readyz").json()
    assert (ready["mode"], ready["processes"], ready["concurrency"]) == (mode, 1, concurrency)
    assert label in ready["note"]
    startup_line = f"baseline mode={mode} processes=1 threads={ready['threads']} expected concurrency="
    startup_line += "upstream-bound" if concurrency is None else str(concurrency)
    assert startup_line in next(tmp_path.glob("baseline-*.log")).read_text()

    assert client.post(f"{url}/chat", json={"query": "warm up"}).status_code == 200
    mock_server.configure(chat_latency=f"const:{CHAT_LATENCY_S * 1000:.0f}ms")
    mock_server.reset_stats()
    assert mock_server.stats()["in_flight"] == 0  # nothing left over from an earlier test
    elapsed, statuses = _timed_burst(client, url)

    assert statuses == [200] * PARALLEL_REQUESTS
    chat = mock_server.stats()["endpoints"]["/v1/chat/completions"]
    assert chat["requests"] == PARALLEL_REQUESTS
    assert chat["max_in_flight"] == (concurrency or PARALLEL_REQUESTS)
    assert elapsed >= rounds * CHAT_LATENCY_S * 0.95
