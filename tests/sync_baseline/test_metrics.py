"""The baseline's /metrics and /readyz against a real `ragload baseline` process and the real mock."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MockServer
from tests.sync_baseline.conftest import StartBaseline

# Each failed /chat is one failed LLM call (embed fails first; LLM_MAX_RETRIES=0 in rag_env).
# Open for 5 s: long enough for the checks made while it is open, even on a busy machine; short enough to
# wait for.
BREAKER_RESET_S = 5
BREAKER_ENV = {"BREAKER_FAIL_MAX": "2", "BREAKER_RESET_TIMEOUT_S": str(BREAKER_RESET_S)}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client, url: str) -> Samples:
    response = client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(found for (sample_name, _), found in samples.items() if sample_name == name)


def test_metrics_expose_requests_llm_calls_and_breaker_after_one_chat(
    start_baseline: StartBaseline, mock_server: MockServer, client: httpx.Client
) -> None:
    url = start_baseline("threadpool", "--threads", "4")
    assert client.post(f"{url}/chat", json={"query": "What does a job queue decouple?"}).status_code == 200

    parsed = scrape(client, url)
    assert value(parsed, "ragload_baseline_requests_total", outcome="ok") == 1
    assert value(parsed, "ragload_baseline_request_seconds_count", outcome="ok") == 1
    assert value(parsed, "ragload_baseline_request_seconds_bucket", outcome="ok", le="+Inf") == 1
    assert value(parsed, "ragload_llm_request_seconds_count", operation="chat") == 1
    assert value(parsed, "ragload_llm_request_seconds_count", operation="embed") == 1
    assert value(parsed, "ragload_breaker_state", state="closed") == 1
    assert value(parsed, "ragload_breaker_state", state="open") == 0

    mock_server.configure(error_rate=1.0)
    assert client.post(f"{url}/chat", json={"query": "hi"}).status_code == 503
    assert client.post(f"{url}/chat", json={"query": ""}).status_code == 422
    parsed = scrape(client, url)
    assert value(parsed, "ragload_baseline_requests_total", outcome="unavailable") == 1
    assert value(parsed, "ragload_baseline_requests_total", outcome="bad_request") == 1
    assert total(parsed, "ragload_llm_errors_total") == 1


def test_several_processes_share_one_exposition(start_baseline: StartBaseline, client: httpx.Client) -> None:
    """With --processes 2 any process answers /metrics with the sum over both (multiprocess mode)."""
    url = start_baseline("asyncio", "--processes", "2")
    deadline = time.monotonic() + 60
    while value(scrape(client, url), "ragload_breaker_state", state="closed") < 2:
        assert time.monotonic() < deadline, "the second process never came up"
        time.sleep(0.2)
    requests = 8
    with httpx.Client(timeout=30) as fresh:  # new connections: uvicorn's processes share the listening socket
        for n in range(requests):
            assert fresh.post(f"{url}/chat", json={"query": f"question {n}"}).status_code == 200
    for _ in range(3):  # whichever process answers the scrape, it reports every process's requests
        with httpx.Client(timeout=30) as fresh:
            parsed = scrape(fresh, url)
        assert value(parsed, "ragload_baseline_requests_total", outcome="ok") == requests
        assert value(parsed, "ragload_llm_request_seconds_count", operation="chat") == requests
        assert value(parsed, "ragload_breaker_state", state="closed") == 2


def test_readyz_reports_the_breaker_and_is_503_while_it_is_open(
    start_baseline: StartBaseline, mock_server: MockServer, client: httpx.Client
) -> None:
    url = start_baseline("threadpool", env=BREAKER_ENV)
    ready = client.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["llm_breaker"] == "closed"

    mock_server.configure(error_rate=1.0)
    for _ in range(2):
        assert client.post(f"{url}/chat", json={"query": "hi"}).status_code == 503
    before = int(mock_server.stats()["requests"])
    refused = client.post(f"{url}/chat", json={"query": "hi"})
    assert refused.status_code == 503 and "circuit breaker" in refused.json()["detail"]
    assert int(mock_server.stats()["requests"]) == before  # failed fast

    ready = client.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable" and ready.json()["llm_breaker"] == "open"
    assert 1 <= int(ready.headers["Retry-After"]) <= BREAKER_RESET_S
    assert value(scrape(client, url), "ragload_breaker_state", state="open") == 1

    mock_server.configure(error_rate=0.0)
    deadline = time.monotonic() + 6 * BREAKER_RESET_S  # a failure bound only: it comes back after 5 s
    while (ready := client.get(f"{url}/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "readiness never came back after the reset timeout"
        time.sleep(0.1)
    assert ready.json()["llm_breaker"] == "half-open"  # past the reset timeout: the next call is a trial
    assert client.post(f"{url}/chat", json={"query": "hi"}).status_code == 200
    ready = client.get(f"{url}/readyz")
    assert ready.json()["status"] == "ready" and ready.json()["llm_breaker"] == "closed"
    assert value(scrape(client, url), "ragload_breaker_state", state="closed") == 1
