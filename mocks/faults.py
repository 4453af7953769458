"""Fault injection and server-side limits: which calls fail, and how, at the configured rates.

Faults are drawn per call from a seeded generator: 500/503 (after the call's latency, as a failed upstream
call costs time too), 429 with Retry-After (at once), a hang (no answer until the client gives up) and, for
streams, a connection cut half-way. Limits (concurrent calls, requests and tokens per minute per model) answer
429 at once with the time until the call would fit, as the OpenAI API does.
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass

from mocks.asgi import ApiError, retry_after_headers
from mocks.config import MockConfig


class Fault(enum.Enum):
    NONE = "none"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    THROTTLED = "429"
    HANG = "hang"
    DROP = "drop"


def draw_fault(config: MockConfig, rng: random.Random, streaming: bool) -> Fault:
    """One fault (or none) with the configured probabilities; draws nothing when no fault is configured."""
    if config.fault_total() == 0.0:
        return Fault.NONE
    x = rng.random()
    for fault, rate in (
        (Fault.SERVER_ERROR, config.error_rate / 2),
        (Fault.UNAVAILABLE, config.error_rate / 2),
        (Fault.THROTTLED, config.throttle_rate),
        (Fault.HANG, config.hang_rate),
        (Fault.DROP, config.drop_rate),
    ):
        if x < rate:
            return fault if streaming or fault is not Fault.DROP else Fault.NONE
        x -= rate
    return Fault.NONE


def fault_error(fault: Fault, config: MockConfig) -> ApiError:
    """The error a 500/503/429 fault is answered with."""
    if fault is Fault.SERVER_ERROR:
        return ApiError(
            500, "The server had an error while processing your request. (mock fault)", "server_error"
        )
    if fault is Fault.UNAVAILABLE:
        return ApiError(
            503,
            "The engine is currently overloaded, please try again later. (mock fault)",
            "server_error",
            "service_unavailable",
            headers=retry_after_headers(config.retry_after),
        )
    if fault is Fault.THROTTLED:
        return rate_limited(
            f"Rate limit reached (mock fault). Please try again in {config.retry_after:g}s.",
            config.retry_after,
        )
    raise ValueError(f"{fault} is not answered with an error")


def rate_limited(message: str, retry_after_s: float, type_: str = "requests") -> ApiError:
    return ApiError(429, message, type_, "rate_limit_exceeded", headers=retry_after_headers(retry_after_s))


class TokenBucket:
    """A budget of `per_minute` units, refilled steadily; a call takes `cost`, or learns how long to wait."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = time.monotonic()

    def take(self, cost: float, now: float) -> float:
        """0 if `cost` was taken, else the seconds until it would fit (inf if it never can)."""
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if cost > self.capacity:
            return float("inf")
        if self.level >= cost:
            self.level -= cost
            return 0.0
        return (cost - self.level) / self.rate


@dataclass
class Limits:
    """Requests- and tokens-per-minute budgets per model (rebuilt when the config changes)."""

    rpm: int
    tpm: int

    def __post_init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def _bucket(self, unit: str, model: str, per_minute: int) -> TokenBucket:
        key = (unit, model)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(per_minute)
        return bucket

    def check(self, model: str, tokens: int) -> None:
        """Raise a 429 ApiError if the call does not fit the model's RPM or TPM budget."""
        if not (self.rpm or self.tpm):
            return
        now = time.monotonic()
        if self.rpm:
            wait = self._bucket("requests", model, self.rpm).take(1, now)
            if wait:
                raise rate_limited(
                    f"Rate limit reached for {model} on requests per min (RPM): Limit {self.rpm}. "
                    f"Please try again in {wait:.3g}s.",
                    wait,
                )
        if self.tpm:
            wait = self._bucket("tokens", model, self.tpm).take(tokens, now)
            if wait == float("inf"):
                raise rate_limited(
                    f"Request too large for {model} on tokens per min (TPM): "
                    f"Limit {self.tpm}, Requested {tokens}.",
                    60.0,
                    "tokens",
                )
            if wait:
                raise rate_limited(
                    f"Rate limit reached for {model} on tokens per min (TPM): "
                    f"Limit {self.tpm}, Requested {tokens}. "
                    f"Please try again in {wait:.3g}s.",
                    wait,
                    "tokens",
                )


def concurrency_exceeded(limit: int) -> ApiError:
    return rate_limited(f"Too many concurrent requests: limit {limit}. Please try again in 1s.", 1.0)
