"""Live config, stats, fault injection, server-side limits and OpenAI-shaped 4xx answers to bad input."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import MockServer

CHAT = {"model": "mock-chat", "messages": [{"role": "user", "content": "Question: what is JSON?"}]}


def put_config(mock_server: MockServer, body: Any) -> httpx.Response:
    return httpx.put(f"{mock_server.url}/_mock/config", json=body)


def sdk(mock_server: MockServer, **options: Any) -> OpenAI:
    return OpenAI(base_url=mock_server.base_url, api_key="mock-key", max_retries=0, **options)


async def chat_statuses(mock_server: MockServer, count: int, concurrency: int = 50) -> Counter[int]:
    limits = httpx.Limits(max_connections=concurrency)
    # Generous: on a busy machine a call may wait seconds for one of the pool's connections (PoolTimeout at
    # 10 s with both cores kept busy); what is counted here is statuses, not time.
    async with httpx.AsyncClient(base_url=mock_server.base_url, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(*(client.post("/chat/completions", json=CHAT) for _ in range(count)))
    return Counter(response.status_code for response in responses)


def test_config_round_trips_and_partial_updates_change_only_their_keys(mock_server: MockServer) -> None:
    before = mock_server.get_config()
    assert before["chat_latency"] == "const:0ms" and before["seed"] == 7
    assert mock_server.configure(**before) == before
    after = mock_server.configure(error_rate=0.25, chat_latency="lognormal:800ms,0.5")
    assert after == {**before, "error_rate": 0.25, "chat_latency": "lognormal:800ms,0.5"}
    assert mock_server.get_config() == after


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"chat_latency": "gauss:1s"}, "chat_latency: unknown latency distribution 'gauss'"),
        ({"embed_latency": "const:20"}, "embed_latency: duration '20' needs a unit"),
        ({"error_rate": 1.5}, "error_rate: Input should be less than or equal to 1"),
        ({"chat_latency": 200}, "chat_latency: a latency spec is a string"),
        ({"latency": "const:1s"}, "latency: unknown key"),
        ({"error_rate": 0.6, "hang_rate": 0.6}, "must not exceed 1"),
    ],
)
def test_a_bad_config_is_a_422_that_says_what_is_wrong(
    mock_server: MockServer, body: Any, message: str
) -> None:
    before = mock_server.get_config()
    response = put_config(mock_server, body)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "invalid_config"
    assert mock_server.get_config() == before


def test_stats_count_requests_errors_and_endpoints(mock_server: MockServer) -> None:
    httpx.delete(f"{mock_server.url}/_mock/stats").raise_for_status()
    client = sdk(mock_server)
    client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    client.embeddings.create(model="mock-embed", input=["a", "b"])
    httpx.post(f"{mock_server.base_url}/embeddings", json={"model": "mock-embed"})
    stats = mock_server.stats()
    assert (stats["requests"], stats["errors"], stats["in_flight"]) == (3, 1, 0)
    assert stats["endpoints"]["/v1/chat/completions"]["statuses"] == {"200": 1}
    assert stats["endpoints"]["/v1/embeddings"]["statuses"] == {"200": 1, "400": 1}


async def test_errors_appear_at_the_configured_rate(mock_server: MockServer) -> None:
    mock_server.configure(error_rate=0.2)
    statuses = await chat_statuses(mock_server, 500)
    assert set(statuses) == {200, 500, 503}
    assert 0.15 <= (statuses[500] + statuses[503]) / 500 <= 0.25
    assert statuses[500] > 20 and statuses[503] > 20


async def test_the_same_seed_replays_the_same_faults(mock_server: MockServer) -> None:
    async def sequence() -> list[int]:
        async with httpx.AsyncClient(base_url=mock_server.base_url) as client:
            return [(await client.post("/chat/completions", json=CHAT)).status_code for _ in range(30)]

    mock_server.configure(error_rate=0.5, seed=42)
    first = await sequence()
    mock_server.configure(seed=42)
    assert await sequence() == first
    assert 200 in first and len(set(first)) > 1


def test_throttling_answers_429_with_retry_after(mock_server: MockServer) -> None:
    mock_server.configure(throttle_rate=1.0, retry_after=3)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(mock_server).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.response.headers["retry-after-ms"] == "3000"
    assert caught.value.code == "rate_limit_exceeded"


def test_a_hang_lasts_until_the_client_gives_up(mock_server: MockServer) -> None:
    mock_server.configure(hang_rate=1.0)
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        sdk(mock_server, timeout=0.3).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert time.perf_counter() - started >= 0.3
    deadline = time.monotonic() + 5
    while mock_server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mock_server.stats()["in_flight"] == 0  # the server noticed the disconnect and let the call go


def test_a_dropped_stream_breaks_off_midway(mock_server: MockServer) -> None:
    mock_server.configure(drop_rate=1.0)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        body = {**CHAT, "stream": True}
        with httpx.stream("POST", f"{mock_server.base_url}/chat/completions", json=body) as response:
            assert response.status_code == 200
            received.extend(line for line in response.iter_lines() if line)
    assert received and "data: [DONE]" not in received
    assert sdk(mock_server).chat.completions.create(**CHAT).choices  # type: ignore[call-overload]


def test_requests_per_minute_limit(mock_server: MockServer) -> None:
    mock_server.configure(rpm=3)
    client = sdk(mock_server)
    for _ in range(3):
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert float(caught.value.response.headers["retry-after-ms"]) > 1000  # a minute's budget refills slowly
    client.embeddings.create(model="mock-embed", input="other models have their own budget")


def test_tokens_per_minute_limit(mock_server: MockServer) -> None:
    mock_server.configure(tpm=10)
    with pytest.raises(openai.RateLimitError, match="Request too large"):
        sdk(mock_server).embeddings.create(model="mock-embed", input=" ".join(["word"] * 11))


async def test_max_concurrent_calls(mock_server: MockServer) -> None:
    mock_server.configure(max_concurrent=2, chat_latency="const:300ms")
    statuses = await chat_statuses(mock_server, 5)
    assert statuses == {200: 2, 429: 3}


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/chat/completions", b"{not json", 400, "invalid_json"),
        ("/chat/completions", b"[1, 2]", 400, "invalid_json"),
        ("/chat/completions", {"model": "mock-chat"}, 400, "missing_required_parameter"),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}]},
            400,
            "missing_required_parameter",
        ),
        ("/chat/completions", {"model": "mock-chat", "messages": "hi"}, 400, "invalid_type"),
        (
            "/chat/completions",
            {"model": "mock-chat", "messages": [{"role": "boss", "content": "x"}]},
            400,
            None,
        ),
        (
            "/chat/completions",
            {"model": "mock-chat", "messages": [{"role": "user", "content": 5}]},
            400,
            None,
        ),
        ("/chat/completions", {**CHAT, "max_tokens": 0}, 400, "integer_below_min_value"),
        ("/chat/completions", {**CHAT, "stream": "yes"}, 400, "invalid_type"),
        ("/embeddings", {"model": "mock-embed"}, 400, "missing_required_parameter"),
        ("/embeddings", {"model": "mock-embed", "input": 42}, 400, "invalid_value"),
        ("/embeddings", {"model": "mock-embed", "input": ["ok", ""]}, 400, "invalid_value"),
        (
            "/embeddings",
            {"model": "mock-embed", "input": "x", "encoding_format": "hex"},
            400,
            "invalid_value",
        ),
        ("/embeddings", {"model": "mock-embed", "input": "x", "dimensions": 0}, 400, "invalid_value"),
        ("/nowhere", {}, 404, "unknown_url"),
    ],
)
def test_bad_input_gets_an_openai_shaped_4xx(
    mock_server: MockServer, path: str, body: Any, status: int, code: str | None
) -> None:
    content = body if isinstance(body, bytes) else None
    response = httpx.post(
        f"{mock_server.base_url}{path}", content=content, json=None if content else body, timeout=5
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code


def test_wrong_method_is_405(mock_server: MockServer) -> None:
    response = httpx.get(f"{mock_server.base_url}/chat/completions")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
