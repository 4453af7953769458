"""Measure the machinery's own cost per request (everything but the upstream's latency), once per run.

With the mock answering at zero latency, what is left of a request's service time is the pipeline's and
the queue's overhead (HTTP to the mock, the index search, RQ's dequeue and result store). `ideal_rps` then
uses S = configured upstream latency + this overhead, so that a gap between measured and ideal throughput
is the system's doing, not a known constant left out. Queued: one worker kept busy by several clients,
overhead = 1 / jobs per second. Baseline: one client in sequence, overhead = mean latency.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx

ZERO_LATENCY = {"chat_latency": "const:0ms", "embed_latency": "const:0ms"}
QUEUED_CLIENTS = 4  # enough to keep one worker's queue from ever running dry
MEASURE_S = 2.0
BODY = {"query": "How do I serialize an object to a JSON formatted string?", "top_k": 4}


def _mock_config(mock_url: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(changes).encode() if changes is not None else None
    request = urllib.request.Request(
        f"{mock_url}/_mock/config",
        data=data,
        method="PUT" if changes is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.load(response))


def _count_for(seconds: float, clients: int, one: Callable[[httpx.Client], None]) -> int:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        with httpx.Client(timeout=10) as client:
            one(client)  # warm the connection first
            while time.monotonic() < stop:
                one(client)
                done[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done)


def queued_overhead_ms(api_url: str) -> float:
    def one(client: httpx.Client) -> None:
        job_id = client.post(f"{api_url}/chat", json=BODY).raise_for_status().json()["job_id"]
        client.get(f"{api_url}/job-status", params={"job_id": job_id, "wait": 5}).raise_for_status()

    jobs = _count_for(MEASURE_S, QUEUED_CLIENTS, one)
    return MEASURE_S * 1000 / max(jobs, 1)


def sync_overhead_ms(baseline_url: str) -> float:
    def one(client: httpx.Client) -> None:
        client.post(f"{baseline_url}/chat", json=BODY).raise_for_status()

    requests = _count_for(MEASURE_S, 1, one)
    return MEASURE_S * 1000 / max(requests, 1)


def measure(
    urls: dict[str, str], scale_workers: Callable[[int], None], reset: Callable[[], None]
) -> dict[str, float]:
    """{"queued": ms, "sync": ms} for whichever of the two is there; {} without a mock to silence."""
    mock = urls.get("mock")
    if not mock:
        return {}
    saved = _mock_config(mock)
    result: dict[str, float] = {}
    try:
        _mock_config(mock, ZERO_LATENCY)
        if urls.get("api"):
            scale_workers(1)
            reset()
            result["queued"] = round(queued_overhead_ms(urls["api"]), 2)
            reset()
        if urls.get("baseline"):
            result["sync"] = round(sync_overhead_ms(urls["baseline"]), 2)
    finally:
        _mock_config(mock, {k: saved[k] for k in ZERO_LATENCY})
    return result
