"""Common random numbers: each call's draws come from the seed and the request, not the arrival order."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import Counter
from typing import Any

import httpx
import pytest

from mocks.draws import Draws, request_key
from mocks.latency import LatencySpec
from tests.conftest import MockServer


def test_a_draw_depends_on_seed_key_and_occurrence_only() -> None:
    keys = [request_key([{"role": "user", "content": f"question {i}"}]) for i in range(50)]
    forward = Draws(7)
    first = {(k, n): forward.draw(k) for n in range(3) for k in keys}
    backward = Draws(7)
    second = {(k, n): backward.draw(k) for k in reversed(keys) for n in range(3)}
    assert first == second
    assert Draws(8).draw(keys[0]) != Draws(7).draw(keys[0])
    forward.reset()
    assert forward.draw(keys[0]) == first[(keys[0], 0)]


def test_draws_are_uniform_and_the_two_streams_independent() -> None:
    draws = Draws(1)
    samples = [draws.draw(request_key(i)) for i in range(20_000)]
    latency = [d.latency_u for d in samples]
    fault = [d.fault_u for d in samples]
    assert 0 < min(latency) and max(latency) < 1
    assert statistics.mean(latency) == pytest.approx(0.5, abs=0.01)
    assert sum(x < 0.1 for x in fault) / len(fault) == pytest.approx(0.1, abs=0.01)
    assert abs(statistics.correlation(latency, fault)) < 0.03


@pytest.mark.parametrize(
    "spec", ["const:200ms", "uniform:100ms,300ms", "normal:500ms,100ms", "lognormal:800ms,0.5", "exp:1s"]
)
def test_quantile_is_the_inverse_cdf(spec: str) -> None:
    model = LatencySpec.parse(spec)
    assert model.quantile(0.5) == pytest.approx(model.median, rel=1e-6)
    rng = random.Random(5)
    from_uniforms = [model.quantile(rng.random()) for _ in range(4000)]
    assert statistics.median(from_uniforms) == pytest.approx(model.median, rel=0.05)


def _calls(mock_server: MockServer) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """Each recorded call's (status, draw) by (endpoint, request key, occurrence)."""
    log = httpx.get(f"{mock_server.url}/_mock/calls").json()
    fields = log["fields"]
    at = {name: fields.index(name) for name in fields}
    return {
        (row[at["endpoint"]], row[at["key"]], row[at["occurrence"]]): (row[at["status"]], row[at["draw_ms"]])
        for row in log["calls"]
    }


async def test_the_same_requests_in_another_order_get_the_same_draws(mock_server: MockServer) -> None:
    mock_server.configure(
        chat_latency="lognormal:4ms,0.5", embed_latency="lognormal:2ms,0.5", error_rate=0.3, seed=11
    )
    # Ten questions, each asked three times: the occurrence count tells repeats apart.
    requests: list[tuple[str, dict[str, Any]]] = []
    for i in range(10):
        question = f"Question: how does step {i} work?"
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], "max_tokens": 8}
        requests += [("/chat/completions", chat), ("/embeddings", {"model": "m", "input": question})] * 3
    async with httpx.AsyncClient(base_url=mock_server.base_url, timeout=10) as client:
        httpx.delete(f"{mock_server.url}/_mock/stats").raise_for_status()
        for path, body in requests:  # one after another
            await client.post(path, json=body)
        in_order = _calls(mock_server)
        httpx.delete(f"{mock_server.url}/_mock/stats").raise_for_status()
        shuffled = requests[:]
        random.Random(3).shuffle(shuffled)
        await asyncio.gather(*(client.post(path, json=body) for path, body in shuffled))  # all at once
        concurrently = _calls(mock_server)
    assert len(in_order) == len(requests) == len(concurrently)
    assert in_order == concurrently
    statuses = Counter(status for status, _ in in_order.values())
    assert statuses[200] and statuses[500] + statuses[503]  # faults too are the request's, not the order's
    assert len({draw for _, draw in in_order.values()}) > len(requests) // 2  # repeats get their own draws


def test_calls_are_logged_with_their_schedule_and_cleared_with_the_stats(mock_server: MockServer) -> None:
    mock_server.configure(chat_latency="const:30ms")
    httpx.delete(f"{mock_server.url}/_mock/stats").raise_for_status()
    body = {"model": "m", "messages": [{"role": "user", "content": "Question: hi"}]}
    response = httpx.post(f"{mock_server.base_url}/chat/completions", json=body)
    assert float(response.headers["x-mock-scheduled-ms"]) == pytest.approx(30.0)
    log = httpx.get(f"{mock_server.url}/_mock/calls").json()
    (row,) = log["calls"]
    call = dict(zip(log["fields"], row, strict=True))
    assert call["endpoint"] == "chat" and call["status"] == 200 and call["occurrence"] == 0
    assert call["draw_ms"] == call["scheduled_ms"] == pytest.approx(30.0)
    assert call["actual_ms"] >= call["scheduled_ms"]
    assert call["completion_tokens"] == len(response.json()["choices"][0]["message"]["content"].split())
    httpx.delete(f"{mock_server.url}/_mock/stats").raise_for_status()
    assert httpx.get(f"{mock_server.url}/_mock/calls").json()["calls"] == []


async def test_calls_are_logged_with_their_start_and_first_token(mock_server: MockServer) -> None:
    """`started_ms` puts each call on the clock of the last reset (so a harness can count calls in flight
    over time); `ttft_ms` is when the engine gave the call its first token (null without one)."""
    mock_server.configure(
        capacity="batch", chat_latency="const:5ms", max_batch=2, step_base="20ms", step_per_seq="0ms"
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "Question: hi"}], "max_tokens": 3}
    async with httpx.AsyncClient(base_url=mock_server.base_url, timeout=10) as client:
        httpx.delete(f"{mock_server.url}/_mock/stats").raise_for_status()
        await asyncio.gather(*(client.post("/chat/completions", json=body) for _ in range(4)))
        mock_server.configure(capacity="unbounded")
        await client.post("/chat/completions", json=body)
    log = httpx.get(f"{mock_server.url}/_mock/calls").json()
    calls = [dict(zip(log["fields"], row, strict=True)) for row in log["calls"]]
    batch, unbounded = calls[:4], calls[4]
    assert all(c["started_ms"] >= 0 for c in calls)
    assert unbounded["started_ms"] >= max(c["started_ms"] for c in batch)
    assert unbounded["ttft_ms"] is None  # the whole answer at once: no first token of its own
    # Two slots for four calls: the last two waited for a slot, at least one 20 ms step longer than the
    # others.
    ttfts = sorted(c["ttft_ms"] for c in batch)
    assert all(c["ttft_ms"] <= c["actual_ms"] for c in batch)
    assert ttfts[2] >= ttfts[1] + 20
