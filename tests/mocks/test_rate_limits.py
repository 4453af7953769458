"""Rate limits as a hosted API keeps them: x-ratelimit-* headers on every answer, 429 with Retry-After, and
the official openai SDK waiting that long before its retry succeeds."""

from __future__ import annotations

import asyncio
import time

import httpx
import httpx2
import pytest
from openai import OpenAI

from mocks.faults import TokenBucket, format_reset
from tests.conftest import MockServer

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Question: what is a queue?"}]}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (1.0, "1s"),
        (8.64, "8.64s"),
        (360.0, "6m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_reset_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_a_bucket_reports_limit_remaining_and_reset() -> None:
    bucket = TokenBucket(per_minute=60, now=0.0)
    bucket.level -= 1
    assert dict(bucket.headers(b"requests")) == {
        b"x-ratelimit-limit-requests": b"60",
        b"x-ratelimit-remaining-requests": b"59",
        b"x-ratelimit-reset-requests": b"1s",
    }
    bucket.refill(0.5)
    assert bucket.level == pytest.approx(59.5)


def test_every_answer_carries_the_headers(mock_server: MockServer) -> None:
    mock_server.configure(rpm=30, tpm=6000)  # refills of 0.5 requests and 100 tokens per second
    first = httpx.post(f"{mock_server.base_url}/chat/completions", json=CHAT)
    second = httpx.post(f"{mock_server.base_url}/chat/completions", json=CHAT)
    for response in (first, second):
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "30"
        assert response.headers["x-ratelimit-limit-tokens"] == "6000"
        assert response.headers["x-ratelimit-reset-requests"].endswith(("ms", "s"))
    assert int(second.headers["x-ratelimit-remaining-requests"]) < int(
        first.headers["x-ratelimit-remaining-requests"]
    )
    tokens_used = first.json()["usage"]["total_tokens"]
    assert 0 <= 6000 - tokens_used - int(first.headers["x-ratelimit-remaining-tokens"]) <= 1
    stream = {**CHAT, "stream": True}
    with httpx.stream("POST", f"{mock_server.base_url}/chat/completions", json=stream) as response:
        assert response.headers["x-ratelimit-limit-requests"] == "30"
    embedded = httpx.post(
        f"{mock_server.base_url}/embeddings", json={"model": "text-embedding-3-small", "input": "x"}
    )
    assert embedded.headers["x-ratelimit-limit-tokens"] == "6000"
    mock_server.configure(rpm=0, tpm=0)
    assert (
        "x-ratelimit-limit-requests"
        not in httpx.post(f"{mock_server.base_url}/chat/completions", json=CHAT).headers
    )


async def _use_up(mock_server: MockServer, calls: int) -> None:
    async with httpx.AsyncClient(base_url=mock_server.base_url, timeout=10) as client:
        await asyncio.gather(*(client.post("/chat/completions", json=CHAT) for _ in range(calls)))


def _drain(mock_server: MockServer) -> httpx.Response:
    """Calls until one is refused: the budget is then below one request."""
    with httpx.Client(base_url=mock_server.base_url, timeout=10) as client:
        while (response := client.post("/chat/completions", json=CHAT)).status_code != 429:
            pass
    return response


async def test_an_empty_bucket_is_a_429_that_the_sdk_waits_out(mock_server: MockServer) -> None:
    mock_server.configure(rpm=20)  # a budget of 20, refilled at one every 3 s
    seen: list[tuple[float, int, str | None]] = []  # what the SDK's HTTP client received, and when

    def record(response: httpx2.Response) -> None:
        seen.append((time.perf_counter(), response.status_code, response.headers.get("retry-after-ms")))

    http = httpx2.Client(event_hooks={"response": [record]})
    sdk = OpenAI(base_url=mock_server.base_url, api_key="sk-test", max_retries=3, http_client=http)
    await _use_up(mock_server, 15)
    for _ in range(3):  # the bucket may refill one request between the drain and the SDK's call: try again
        refused = _drain(mock_server)
        seen.clear()
        answer = await asyncio.to_thread(
            lambda: sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
        )
        if seen[0][1] == 429:
            break
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 0 < float(refused.headers["retry-after-ms"]) <= 3000 and refused.headers["retry-after"] in "123"
    assert answer.choices[0].message.content
    (throttled_at, _, wait_ms), (answered_at, status, _) = seen
    assert status == 200 and wait_ms is not None
    assert answered_at - throttled_at >= 0.95 * float(wait_ms) / 1000  # it waited what the 429 said


def test_a_request_larger_than_the_token_budget_is_refused_for_good(mock_server: MockServer) -> None:
    mock_server.configure(tpm=10)
    response = httpx.post(f"{mock_server.base_url}/embeddings", json={"model": "m", "input": "word " * 11})
    assert response.status_code == 429 and "Request too large" in response.json()["error"]["message"]
    assert response.headers["x-ratelimit-limit-tokens"] == "10"
