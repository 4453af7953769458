"""The baseline's HTTP contract against a real process: answers, bad input, a failing or hanging upstream."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from system.rag.schemas import MAX_QUERY_CHARS, MAX_TOP_K, RagResult
from tests.conftest import MockServer
from tests.sync_baseline.conftest import StartBaseline

SLOW_UPSTREAM_S = 8.0  # far past the 1 s request deadline: a 504 before it is the deadline's doing

BAD_BODIES: dict[str, Any] = {
    "empty query": {"query": ""},
    "whitespace query": {"query": "  \n\t "},
    "oversized query": {"query": "x" * (MAX_QUERY_CHARS + 1)},
    "top_k zero": {"query": "hi", "top_k": 0},
    "top_k too large": {"query": "hi", "top_k": MAX_TOP_K + 1},
    "top_k as string": {"query": "hi", "top_k": "4"},
    "top_k as float": {"query": "hi", "top_k": 4.0},
    "query as number": {"query": 42},
    "unknown field": {"query": "hi", "stream": True},
    "missing query": {"top_k": 3},
    "not an object": ["hi"],
}


@pytest.fixture
def threadpool_url(start_baseline: StartBaseline) -> str:
    return start_baseline("threadpool", "--threads", "4")


def test_chat_answers_from_the_corpus_and_reports_its_mode(threadpool_url: str, client: httpx.Client) -> None:
    response = client.post(
        f"{threadpool_url}/chat", json={"query": "What does a job queue decouple?", "top_k": 3}
    )

    assert response.status_code == 200
    result = RagResult.model_validate(response.json())
    assert len(result.sources) == 3
    assert result.answer.startswith("According to [1]")
    assert client.get(f"{threadpool_url}/healthz").json() == {"status": "ok"}
    ready = client.get(f"{threadpool_url}/readyz").json()
    assert ready | {"note": None} == {
        "status": "ready",
        "mode": "threadpool",
        "processes": 1,
        "threads": 4,
        "concurrency": 4,
        "note": None,
        "llm_breaker": "closed",
    }


def test_bad_input_is_a_4xx_json_error(threadpool_url: str, client: httpx.Client) -> None:
    for case, body in BAD_BODIES.items():
        response = client.post(f"{threadpool_url}/chat", json=body)
        assert response.status_code == 422, case
        problems = response.json()["detail"]
        assert problems and all({"type", "loc", "msg"} <= set(problem) for problem in problems), case
    blank = client.post(f"{threadpool_url}/chat", json=BAD_BODIES["whitespace query"]).json()["detail"]
    assert blank[0]["loc"] == ["body", "query"] and "non-whitespace" in blank[0]["msg"]
    malformed = client.post(
        f"{threadpool_url}/chat", content=b'{"query": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"


def test_failing_upstream_is_503_with_retry_after(
    threadpool_url: str, mock_server: MockServer, client: httpx.Client
) -> None:
    mock_server.configure(error_rate=1.0)

    response = client.post(f"{threadpool_url}/chat", json={"query": "hi"})

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("mode", ["threadpool", "asyncio"])
def test_request_deadline_answers_504_instead_of_waiting(
    mode: str, start_baseline: StartBaseline, mock_server: MockServer, client: httpx.Client
) -> None:
    url = start_baseline(mode, "--request-timeout-s", "1")
    mock_server.configure(chat_latency=f"const:{SLOW_UPSTREAM_S:g}s")

    started = time.perf_counter()
    response = client.post(f"{url}/chat", json={"query": "hi"})

    assert response.status_code == 504
    assert "deadline" in response.json()["detail"]
    assert time.perf_counter() - started < SLOW_UPSTREAM_S  # answered before the upstream would have


def test_hung_upstream_is_504_even_in_blocking_mode(
    start_baseline: StartBaseline, mock_server: MockServer, client: httpx.Client
) -> None:
    """The request deadline cannot fire while the loop is blocked; the LLM client's own timeout does.

    The hung upstream never answers, so only that timeout can end the request: without it the test's client
    would give up after its own 30 s and raise instead of getting a 504."""
    url = start_baseline("blocking", env={"LLM_TIMEOUT_S": "1"})
    mock_server.configure(hang_rate=1.0)

    response = client.post(f"{url}/chat", json={"query": "hi"})

    assert response.status_code == 504
    assert isinstance(response.json()["detail"], str)
