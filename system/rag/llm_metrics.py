"""What both architectures record around an LLM call: its latency, its errors by kind, the breaker's states.

`observe_llm` times one call and counts its failure by kind; system/rag/breaker.py's `llm_guard` wraps it
around every call of the LLM client, so the queued system's workers and the baseline record the same series:
`ragload_llm_request_seconds{operation}`, `ragload_llm_errors{operation,kind}`,
`ragload_breaker_transitions{state}`, and the `ragload_breaker_state{state}` gauge family (rendered at scrape
time by whoever knows the state: the queued API from Valkey, the baseline per process).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from system.rag.errors import CircuitOpen, RagError, UpstreamTimeout, UpstreamUnavailable
from system.rag.prometheus import LATENCY_BUCKETS  # importing it creates a missing PROMETHEUS_MULTIPROC_DIR

BREAKER_STATES = ("closed", "half-open", "open")

LLM_LATENCY = Histogram(
    "ragload_llm_request_seconds", "LLM calls (SDK retries included), by operation", ["operation"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
LLM_ERRORS = Counter("ragload_llm_errors", "Failed LLM calls, by operation and kind", ["operation", "kind"])
BREAKER_TRANSITIONS = Counter("ragload_breaker_transitions", "LLM circuit breaker state changes", ["state"])


def llm_error_kind(exc: BaseException) -> str:
    """A small, fixed vocabulary for failures (metric labels must not explode)."""
    cause = exc.__cause__
    if isinstance(exc, CircuitOpen):
        return "circuit_open"
    if isinstance(exc, UpstreamTimeout | openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.RateLimitError) or isinstance(cause, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, UpstreamUnavailable | openai.APIConnectionError | openai.InternalServerError):
        return "unavailable"
    if isinstance(exc, RedisError):
        return "broker"
    if isinstance(exc, RagError | openai.APIStatusError):
        return "rejected"
    return "error"


@contextmanager
def observe_llm(operation: str) -> Iterator[None]:
    """Time one LLM call; count it as an error (by kind) if it raises."""
    with LLM_LATENCY.labels(operation).time():
        try:
            yield
        except Exception as exc:
            LLM_ERRORS.labels(operation, llm_error_kind(exc)).inc()
            raise


def count_breaker_transition(state: str) -> None:
    BREAKER_TRANSITIONS.labels(state).inc()


def breaker_state_family(state: str) -> GaugeMetricFamily:
    """`ragload_breaker_state`: 1 for the breaker's current state, 0 for the others."""
    family = GaugeMetricFamily(
        "ragload_breaker_state", "LLM circuit breaker: 1 for its current state", labels=["state"]
    )
    for name in BREAKER_STATES:
        family.add_metric([name], 1 if name == state else 0)
    return family
