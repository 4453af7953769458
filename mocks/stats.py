"""Counters behind GET /_mock/stats: requests, errors and calls in flight (now and at most), in total and per
endpoint."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any


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
        self.endpoints: dict[str, EndpointStats] = {}

    def endpoint(self, path: str) -> EndpointStats:
        stats = self.endpoints.get(path)
        if stats is None:
            stats = self.endpoints[path] = EndpointStats()
        return stats

    @property
    def in_flight(self) -> int:
        return sum(stats.in_flight for stats in self.endpoints.values())

    def reset(self) -> None:
        """Zero the counters; calls still in flight stay counted as in flight."""
        self.started = time.time()
        for path, stats in self.endpoints.items():
            self.endpoints[path] = EndpointStats(in_flight=stats.in_flight)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.started,
            "uptime_s": round(time.time() - self.started, 3),
            "requests": sum(stats.requests for stats in self.endpoints.values()),
            "errors": sum(stats.errors for stats in self.endpoints.values()),
            "in_flight": self.in_flight,
            "endpoints": {path: stats.as_dict() for path, stats in sorted(self.endpoints.items())},
        }
