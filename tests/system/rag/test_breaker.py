"""The LLM circuit breaker against the real mock server (live fault config), through the real openai SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pybreaker
import pytest
from redis import Redis

from system.rag.breaker import (
    BreakerSettings,
    CircuitOpen,
    LocalBreakerCollector,
    breaker_status,
    build_breaker,
    llm_guard,
    reset_shared_breaker,
    shared_breaker_state,
)
from system.rag.errors import UpstreamUnavailable
from system.rag.prometheus import render_metrics
from tests.conftest import MockServer

REPO_ROOT = Path(__file__).resolve().parents[3]
# A breaker stays open for OPEN_S while a test checks that it refuses, however slow the machine; then the test
# shortens its reset timeout (pybreaker's public setter) to reach half-open without waiting long.
OPEN_S = 60.0
HALF_OPEN_AFTER_S = 0.2


@pytest.fixture
def client(mock_server: MockServer) -> Iterator[openai.OpenAI]:
    # No SDK retries: each call is one HTTP request, so the counts below are exact.
    sdk = openai.OpenAI(base_url=mock_server.base_url, api_key="mock-key", max_retries=0, timeout=60)
    yield sdk
    sdk.close()


def ask(sdk: openai.OpenAI, breaker: pybreaker.CircuitBreaker) -> str:
    with llm_guard("chat", breaker):
        completion = sdk.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "Question: ping"}], max_tokens=8
        )
    return completion.choices[0].message.content or ""


def requests_seen(mock_server: MockServer) -> int:
    return int(mock_server.stats()["requests"])


def wait_half_open(breaker: pybreaker.CircuitBreaker, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while breaker_status(breaker).retry_after_s > 0:
        assert time.monotonic() < deadline, "the breaker never reached its reset timeout"
        time.sleep(0.05)


def test_opens_after_n_failures_then_half_opens_and_closes(
    mock_server: MockServer, client: openai.OpenAI
) -> None:
    breaker = build_breaker(None, BreakerSettings(fail_max=3, reset_timeout_s=OPEN_S))
    mock_server.configure(error_rate=1.0)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):  # the true error, also for the call that trips it
            ask(client, breaker)
    assert breaker.current_state == pybreaker.STATE_OPEN
    exposed = render_metrics([LocalBreakerCollector(breaker)]).decode()
    assert 'ragload_breaker_state{state="open"} 1.0' in exposed

    before = requests_seen(mock_server)
    with pytest.raises(CircuitOpen) as refused:
        ask(client, breaker)
    assert isinstance(refused.value, UpstreamUnavailable)  # → 503 in the APIs
    assert 0 < refused.value.retry_after <= OPEN_S
    assert requests_seen(mock_server) == before  # failed fast: the upstream was not called

    mock_server.configure(error_rate=0.0)
    breaker.reset_timeout = HALF_OPEN_AFTER_S
    wait_half_open(breaker)
    assert ask(client, breaker)  # the trial call goes through and answers
    assert breaker.current_state == pybreaker.STATE_CLOSED
    assert requests_seen(mock_server) > before


def test_a_failed_trial_call_opens_it_again(mock_server: MockServer, client: openai.OpenAI) -> None:
    breaker = build_breaker(None, BreakerSettings(fail_max=1, reset_timeout_s=HALF_OPEN_AFTER_S))
    mock_server.configure(error_rate=1.0)
    with pytest.raises(openai.InternalServerError):
        ask(client, breaker)
    wait_half_open(breaker)
    with pytest.raises(openai.InternalServerError):  # the trial call reached the upstream and failed
        ask(client, breaker)
    assert breaker.current_state == pybreaker.STATE_OPEN
    breaker.reset_timeout = OPEN_S  # open again from the failed trial on, for as long as the test looks
    with pytest.raises(CircuitOpen):
        ask(client, breaker)


def test_caller_errors_do_not_open_it() -> None:
    breaker = build_breaker(None, BreakerSettings(fail_max=2, reset_timeout_s=60))
    for _ in range(5):
        with pytest.raises(ValueError), llm_guard("chat", breaker):
            raise ValueError("bad request")
    assert breaker.current_state == pybreaker.STATE_CLOSED


TRIP_SCRIPT = """
import sys, openai
from redis import Redis
from system.rag.breaker import build_breaker, shared_breaker_state, llm_guard
breaker = build_breaker(Redis.from_url(sys.argv[1]))  # settings from BREAKER_* env
sdk = openai.OpenAI(base_url=sys.argv[2], api_key="k", max_retries=0, timeout=10)
for _ in range(breaker.fail_max):
    try:
        with llm_guard("chat", breaker):
            sdk.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}])
    except openai.APIError:
        pass
print(breaker.current_state)
"""

STATE_SCRIPT = """
import sys
from redis import Redis
from system.rag.breaker import build_breaker
print(build_breaker(Redis.from_url(sys.argv[1])).current_state)
"""


def run_python(script: str, *args: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "BREAKER_FAIL_MAX": "2",
        "BREAKER_RESET_TIMEOUT_S": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_state_is_shared_across_processes(
    redis_url: str, mock_server: MockServer, client: openai.OpenAI
) -> None:
    connection = Redis.from_url(redis_url)
    mock_server.configure(error_rate=1.0)
    assert run_python(TRIP_SCRIPT, redis_url, mock_server.base_url) == "open"  # another process tripped it

    here = build_breaker(connection, BreakerSettings(fail_max=2, reset_timeout_s=OPEN_S))
    assert shared_breaker_state(connection) == "open"  # what the API's /readyz and /metrics read
    before = requests_seen(mock_server)
    with pytest.raises(CircuitOpen):
        ask(client, here)  # this process never failed a call, yet fails fast
    assert requests_seen(mock_server) == before

    mock_server.configure(error_rate=0.0)
    here.reset_timeout = HALF_OPEN_AFTER_S
    wait_half_open(here)
    ask(client, here)
    assert run_python(STATE_SCRIPT, redis_url) == "closed"  # closed for every process

    reset_shared_breaker(connection)
    assert shared_breaker_state(connection) == "closed"
    connection.close()
