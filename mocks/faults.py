"""Fault injection and server-side limits: which calls fail, and how, at the configured rates.

Faults are drawn per call from the call's own uniform (mocks/draws.py: from the seed and the request, not
from the order of arrivals): 500/503 (after the call's latency, as a failed upstream call costs time too), 429
with Retry-After (at once), a hang (no answer until the client gives up) and, for streams, a connection cut
half-way. Limits (concurrent calls, requests and tokens per minute per model) answer 429 at once with the time
until the call would fit, as the OpenAI API does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mocks import clock
from mocks.asgi import ApiError, retry_after_headers
from mocks.config import MockConfig

Headers = list[tuple[bytes, bytes]] | tuple[()]


class Fault(enum.Enum):
    NONE = "none"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    THROTTLED = "429"
    HANG = "hang"
    DROP = "drop"


def draw_fault(config: MockConfig, u: float, streaming: bool) -> Fault:
    """The fault (or none) that the call's uniform `u` falls on, with the configured probabilities."""
    if config.fault_total() == 0.0:
        return Fault.NONE
    x = u
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


def rate_limited(
    message: str, retry_after_s: float, type_: str = "requests", headers: Headers = ()
) -> ApiError:
    return ApiError(
        429, message, type_, "rate_limit_exceeded", headers=[*retry_after_headers(retry_after_s), *headers]
    )


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes x-ratelimit-reset-* (Go's style): `20ms`, `8.64s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole_minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if whole_minutes == 0:
        return text
    hours, minutes = divmod(int(whole_minutes), 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{text}"


class TokenBucket:
    """A budget of `per_minute` units, refilled steadily; a call takes `cost`, or learns how long to wait."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        """0 if `cost` fits now, else the seconds until it would (inf if it never can)."""
        if cost > self.capacity:
            return float("inf")
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def headers(self, unit: bytes) -> list[tuple[bytes, bytes]]:
        """x-ratelimit-limit-UNIT, -remaining-UNIT and -reset-UNIT (until the bucket is full again)."""
        return [
            (b"x-ratelimit-limit-" + unit, str(int(self.capacity)).encode()),
            (b"x-ratelimit-remaining-" + unit, str(max(0, int(self.level))).encode()),
            (b"x-ratelimit-reset-" + unit, format_reset((self.capacity - self.level) / self.rate).encode()),
        ]


@dataclass
class Limits:
    """Requests- and tokens-per-minute budgets per model (rebuilt when the config changes), as a hosted API
    keeps them: every answer carries the x-ratelimit-* headers, and a call that does not fit is answered 429
    with Retry-After (the openai SDK waits that long before it retries), taking nothing from either budget."""

    rpm: int
    tpm: int

    def __post_init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def _bucket(self, unit: str, model: str, per_minute: int, now: float) -> TokenBucket:
        key = (unit, model)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(per_minute, now)
        else:
            bucket.refill(now)
        return bucket

    def check(self, model: str, tokens: int) -> Headers:
        """The x-ratelimit-* headers for a call that fits (and takes it); a 429 ApiError if it does not."""
        if not (self.rpm or self.tpm):
            return ()
        now = clock.now()
        requests = self._bucket("requests", model, self.rpm, now) if self.rpm else None
        budget = self._bucket("tokens", model, self.tpm, now) if self.tpm else None
        request_wait = requests.wait_for(1) if requests else 0.0
        token_wait = budget.wait_for(tokens) if budget else 0.0
        if not (request_wait or token_wait):
            if requests:
                requests.level -= 1
            if budget:
                budget.level -= tokens
        headers: list[tuple[bytes, bytes]] = []
        if requests:
            headers += requests.headers(b"requests")
        if budget:
            headers += budget.headers(b"tokens")
        if request_wait:
            raise rate_limited(
                f"Rate limit reached for {model} on requests per min (RPM): Limit {self.rpm}. "
                f"Please try again in {request_wait:.3g}s.",
                request_wait,
                headers=headers,
            )
        if token_wait == float("inf"):
            raise rate_limited(
                f"Request too large for {model} on tokens per min (TPM): "
                f"Limit {self.tpm}, Requested {tokens}.",
                60.0,
                "tokens",
                headers,
            )
        if token_wait:
            raise rate_limited(
                f"Rate limit reached for {model} on tokens per min (TPM): "
                f"Limit {self.tpm}, Requested {tokens}. Please try again in {token_wait:.3g}s.",
                token_wait,
                "tokens",
                headers,
            )
        return headers


def concurrency_exceeded(limit: int) -> ApiError:
    return rate_limited(f"Too many concurrent requests: limit {limit}. Please try again in 1s.", 1.0)
