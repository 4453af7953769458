"""Counters behind GET /_mock/stats (requests, errors, calls in flight now and at most, tokens per second)
and the per-call log behind GET /_mock/calls (each call's request key, its draw, its scheduled and actual
time, when it started and when its first token was due)."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from mocks import clock

CALLS_KEPT = 100_000  # the newest calls since the last reset; older ones are counted as dropped

CALL_FIELDS = (
    "endpoint",  # "chat" or "embeddings"
    "key",  # 16 hex digits: hash of the messages (chat) or the inputs (embeddings), see mocks/draws.py
    "occurrence",  # 0 for the first call with this key since the last reset, 1 for the second, ...
    "status",  # HTTP status; 0: the client gave up (a hang) or the stream was cut on purpose
    "draw_ms",  # the call's latency draw (unbounded: its latency or TTFT; batch: time before the engine)
    "scheduled_ms",  # when the model said the answer is complete, from the call's start
    "actual_ms",  # when its last byte was handed to the server, from the same start
    "prompt_tokens",
    "completion_tokens",
    "started_ms",  # when the call reached the app, from the last reset (`since`), on the mock's clock
    "ttft_ms",  # when its first token was due, from the call's start (batch, or streaming); else null
)


class EndpointStats:
    """One endpoint's counters. The app moves `in_flight` up and down around each call; `max_in_flight`, the
    most calls in flight at once since the last reset, follows it (it shows whether calls overlapped)."""

    __slots__ = ("requests", "errors", "statuses", "faults", "_in_flight", "max_in_flight")

    def __init__(self, in_flight: int = 0) -> None:
        self.requests = 0
        self.errors = 0  # answered with a status >= 400, or cut off / abandoned
        self.statuses: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._in_flight = in_flight
        self.max_in_flight = in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self._in_flight = value
        if value > self.max_in_flight:
            self.max_in_flight = value

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "statuses": dict(self.statuses),
            "faults": dict(self.faults),
        }


class Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.clock_at_start = clock.now()  # `started` on the clock calls are timed with
        self.endpoints: dict[str, EndpointStats] = {}
        self.calls: deque[tuple[Any, ...]] = deque(maxlen=CALLS_KEPT)
        self.calls_seen = 0
        self.prompt_tokens = 0  # of chat calls answered in full
        self.completion_tokens = 0

    def endpoint(self, path: str) -> EndpointStats:
        stats = self.endpoints.get(path)
        if stats is None:
            stats = self.endpoints[path] = EndpointStats()
        return stats

    def record(self, call: tuple[Any, ...]) -> None:
        """One finished call, its values in CALL_FIELDS order."""
        self.calls.append(call)
        self.calls_seen += 1

    @property
    def in_flight(self) -> int:
        return sum(stats.in_flight for stats in self.endpoints.values())

    def reset(self) -> None:
        """Zero the counters and the call log; calls still in flight stay counted as in flight."""
        self.started = time.time()
        self.clock_at_start = clock.now()
        for path, stats in self.endpoints.items():
            self.endpoints[path] = EndpointStats(in_flight=stats.in_flight)
        self.calls.clear()
        self.calls_seen = 0
        self.prompt_tokens = self.completion_tokens = 0

    def as_dict(self) -> dict[str, Any]:
        uptime = time.time() - self.started
        return {
            "since": self.started,
            "uptime_s": round(uptime, 3),
            "requests": sum(stats.requests for stats in self.endpoints.values()),
            "errors": sum(stats.errors for stats in self.endpoints.values()),
            "in_flight": self.in_flight,
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "prompt_per_s": round(self.prompt_tokens / uptime, 1) if uptime > 0 else 0.0,
                "completion_per_s": round(self.completion_tokens / uptime, 1) if uptime > 0 else 0.0,
            },
            "endpoints": {path: stats.as_dict() for path, stats in sorted(self.endpoints.items())},
        }

    def calls_dict(self) -> dict[str, Any]:
        """Columnar (a list of rows, in CALL_FIELDS order), times in ms; the request path stored raw values
        (key bytes, seconds, the clock's reading at the call's start) and they are formatted here, once, when
        asked for. `since` (seconds since the epoch) + `started_ms` puts a call on a wall clock."""
        zero = self.clock_at_start
        return {
            "since": self.started,
            "fields": list(CALL_FIELDS),
            "calls": [
                (
                    endpoint,
                    key.hex(),
                    occurrence,
                    status,
                    _ms(draw),
                    _ms(scheduled),
                    _ms(actual),
                    prompt_tokens,
                    completion_tokens,
                    _ms(started - zero),
                    _ms(ttft),
                )
                for (
                    endpoint,
                    key,
                    occurrence,
                    status,
                    draw,
                    scheduled,
                    actual,
                    prompt_tokens,
                    completion_tokens,
                    started,
                    ttft,
                ) in self.calls
            ],
            "dropped": self.calls_seen - len(self.calls),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
