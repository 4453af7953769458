"""Measure the job path's own time per request (everything but the upstream's latency), once per run.

With the mock answering at zero latency, one client sends requests one after another, and the systems' own
clocks say how long each took on the job path: the worker's run time (RQ started → ended) for the queued
system, the pipeline's total for the baseline. No queue, no concurrency, no client or API time in it.

The figure is shown BESIDE the ideal throughput, never in it: ideal_rps = W / S with S the configured
upstream time alone, a number no change to the code can move. A change that slows every job therefore shows
as a lower share of ideal (and the overhead measured here says how much of the gap is the job path's own
cost). Measuring S from the system's throughput instead would hide a slowdown inside the ideal.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx

# `capacity` too: under the batch model a call alone still spends the engine's steps (≈ 130 ms on vllm-like),
# which is the upstream's time, not the job path's.
ZERO_LATENCY = {"chat_latency": "const:0ms", "embed_latency": "const:0ms", "capacity": "unbounded"}
JOBS = 30  # enough for a mean within a few % (the job path's time varies little at zero latency)
MAX_S = 6.0  # ... or this long, whichever comes first (a slow machine measures fewer jobs)
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


def _mean_of(one: Callable[[httpx.Client], float]) -> float:
    """Mean of `one`'s server-side time over JOBS calls in sequence (one warm-up call first)."""
    times: list[float] = []
    stop = time.monotonic() + MAX_S
    with httpx.Client(timeout=10) as client:
        one(client)  # warm the connection and the job path's caches
        while len(times) < JOBS and time.monotonic() < stop:
            times.append(one(client))
    return statistics.fmean(times)


def queued_overhead_ms(api_url: str) -> float:
    def one(client: httpx.Client) -> float:
        job_id = client.post(f"{api_url}/chat", json=BODY).raise_for_status().json()["job_id"]
        body = client.get(f"{api_url}/job-status", params={"job_id": job_id, "wait": 5}).raise_for_status()
        return float(body.json()["timings_ms"]["run"])

    return _mean_of(one)


def sync_overhead_ms(baseline_url: str) -> float:
    def one(client: httpx.Client) -> float:
        body = client.post(f"{baseline_url}/chat", json=BODY).raise_for_status().json()
        return float(body["timings_ms"]["total"])

    return _mean_of(one)


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
