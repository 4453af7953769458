"""The circuit breaker around the LLM (pybreaker), shared by all workers through Valkey.

Shared or per process? **Shared across the queued system's processes** (pybreaker's CircuitRedisStorage in
the broker's Valkey), **per process in the baseline** (in memory: it has no Valkey). Why shared:
- the API's `/readyz` and `/metrics` must report the breaker, and the API never calls the LLM itself: only
  a shared state lets it see what the workers see;
- N per-process breakers each need `fail_max` failures to open, so an outage costs N × fail_max failed
  calls (each with its SDK retries) and the workers open one by one; a shared one opens after `fail_max`
  failures in total and every worker fails fast at once — which is the point of a breaker under a queue;
- the cost is 2–4 Valkey round trips per LLM call (≈ 0.1 ms each on loopback, next to an LLM call of
  tens of ms or more), and workers need Valkey anyway to take jobs. If Valkey is unreachable, pybreaker
  falls back to "closed" (the LLM is still called), so the broker's outage never blocks the LLM path.
Half-open lets calls through until one fails (open again) or `success_threshold` succeed (closed); with a
shared state several workers may each send a trial call, which is harmless.

The breaker counts only upstream failures (timeouts, connection errors, 429, 5xx — whether they come as
openai SDK errors or as the RAG core's UpstreamUnavailable/UpstreamTimeout); a rejected request (4xx) is
the caller's fault and neither opens nor closes it. A call refused by the open breaker raises `CircuitOpen`
(system/rag/errors.py), an `UpstreamUnavailable`, so the APIs map it to 503 with `Retry-After` (the time left
before half-open).

Use: `configure_breaker(redis)` once per process (worker: the broker's client; baseline: None), then
`with llm_guard("chat"): …the SDK call…` around each LLM call (it also records the LLM metrics,
system/rag/llm_metrics.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai
import pybreaker
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from system.rag.errors import CircuitOpen, UpstreamTimeout, UpstreamUnavailable
from system.rag.llm_metrics import breaker_state_family, count_breaker_transition, observe_llm

BREAKER_NAMESPACE = "ragload:llm"  # Valkey keys: ragload:llm:pybreaker:{state,fail_counter,opened_at,…}
_STORAGE_KEYS = ("state", "fail_counter", "success_counter", "opened_at")
_UPSTREAM_FAILURES = (
    UpstreamUnavailable,
    UpstreamTimeout,
    openai.APIConnectionError,  # includes APITimeoutError
    openai.RateLimitError,
    openai.InternalServerError,  # every 5xx
)


class BreakerSettings(BaseSettings):
    """BREAKER_FAIL_MAX, BREAKER_RESET_TIMEOUT_S, BREAKER_SUCCESS_THRESHOLD from the environment."""

    model_config = SettingsConfigDict(env_prefix="BREAKER_", frozen=True, extra="ignore")

    # Consecutive failed calls (each after the SDK's own retries) that open the circuit.
    fail_max: int = Field(default=5, ge=1)
    # Seconds open before a trial call; short, because the queue holds the jobs meanwhile.
    reset_timeout_s: float = Field(default=10.0, gt=0)
    success_threshold: int = Field(default=1, ge=1)


def is_upstream_failure(exc: BaseException) -> bool:
    return isinstance(exc, _UPSTREAM_FAILURES) and not isinstance(exc, CircuitOpen)


class StateChangeListener(pybreaker.CircuitBreakerListener):
    """Calls `on_change` with the new state's name ("closed", "open", "half-open") on every transition."""

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self._on_change(new_state.name)


def redis_storage(connection: Redis) -> pybreaker.CircuitRedisStorage:
    """The shared state (needs a client without decode_responses; pybreaker decodes bytes itself)."""
    return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, connection, namespace=BREAKER_NAMESPACE)


def build_breaker(
    connection: Redis | None = None, settings: BreakerSettings | None = None
) -> pybreaker.CircuitBreaker:
    """A breaker on the shared Valkey state when `connection` is given, else in this process's memory."""
    settings = settings or BreakerSettings()
    storage = redis_storage(connection) if connection is not None else None
    return pybreaker.CircuitBreaker(
        fail_max=settings.fail_max,
        reset_timeout=settings.reset_timeout_s,
        success_threshold=settings.success_threshold,
        exclude=[lambda exc: not is_upstream_failure(exc)],
        listeners=[StateChangeListener(count_breaker_transition)],
        state_storage=storage,
        name="llm",
        # The call that trips the breaker raises its own (true) error; only refused calls raise CircuitOpen.
        throw_new_error_on_trip=False,
    )


_breaker: pybreaker.CircuitBreaker | None = None
_breaker_lock = threading.Lock()


def configure_breaker(
    connection: Redis | None, settings: BreakerSettings | None = None
) -> pybreaker.CircuitBreaker:
    """Set this process's LLM breaker: shared through `connection`, or in memory when it is None."""
    global _breaker
    with _breaker_lock:
        _breaker = build_breaker(connection, settings)
        return _breaker


def get_breaker() -> pybreaker.CircuitBreaker:
    """This process's breaker; an in-memory one if `configure_breaker` was never called."""
    global _breaker
    if _breaker is None:
        with _breaker_lock:
            if _breaker is None:
                _breaker = build_breaker(None)
    return _breaker


@contextmanager
def guarded(breaker: pybreaker.CircuitBreaker) -> Iterator[None]:
    """Run the block through `breaker`; `CircuitOpen` (with the seconds left) when the breaker refuses.

    Uses `breaker.calling()`, which holds pybreaker's lock only to decide, not during the block: the
    block (an LLM call of maybe seconds) must not serialize the threads of a threadpool.
    """
    try:
        with breaker.calling():
            yield
    except pybreaker.CircuitBreakerError as exc:
        raise CircuitOpen(
            "the LLM circuit breaker is open", retry_after=seconds_until_half_open(breaker)
        ) from exc


@contextmanager
def llm_guard(operation: str, breaker: pybreaker.CircuitBreaker | None = None) -> Iterator[None]:
    """What wraps every LLM call: metrics (latency, errors by kind) around the breaker."""
    with observe_llm(operation), guarded(breaker or get_breaker()):
        yield


@dataclass(frozen=True)
class BreakerStatus:
    state: str  # closed | half-open | open
    retry_after_s: float  # 0 unless open

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "retry_after_s": self.retry_after_s}


def seconds_until_half_open(breaker: pybreaker.CircuitBreaker) -> float:
    opened_at = breaker._state_storage.opened_at  # pybreaker has no public getter for it
    if breaker.current_state != pybreaker.STATE_OPEN or opened_at is None:
        return 0.0
    left = (opened_at - datetime.now(UTC)).total_seconds() + breaker.reset_timeout
    return max(0.0, math.ceil(left * 10) / 10)


def breaker_status(breaker: pybreaker.CircuitBreaker | None = None) -> BreakerStatus:
    """For /readyz: the state and, when open, the seconds before a trial call is let through."""
    breaker = breaker or get_breaker()
    return BreakerStatus(breaker.current_state, seconds_until_half_open(breaker))


class LocalBreakerCollector(Collector):
    """Scrape-time `ragload_breaker_state` of this process's breaker (the baseline's /metrics)."""

    def __init__(self, breaker: pybreaker.CircuitBreaker | None = None) -> None:
        self.breaker = breaker

    def collect(self) -> Iterable[Any]:
        yield breaker_state_family((self.breaker or get_breaker()).current_state)


def shared_breaker_state(connection: Redis) -> str:
    """The shared state as the workers see it, read by the API (it never calls the LLM). Raises RedisError."""
    return _decode_state(connection.get(_storage_key("state")))


async def shared_breaker_state_async(connection: AsyncRedis) -> str:
    """The same through redis.asyncio: the API's request paths make no sync Redis call. Raises RedisError."""
    return _decode_state(await connection.get(_storage_key("state")))


def _decode_state(raw: object) -> str:
    if raw is None:
        return pybreaker.STATE_CLOSED
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def reset_shared_breaker(connection: Redis) -> None:
    """Forget the shared state (between bench cells: one cell's outage must not leak into the next)."""
    connection.delete(*(_storage_key(key) for key in _STORAGE_KEYS))


def _storage_key(key: str) -> str:
    return f"{BREAKER_NAMESPACE}:{pybreaker.CircuitRedisStorage.BASE_NAMESPACE}:{key}"
