"""What `/metrics` and the harness read of a queue engine at scrape time (`BrokerState`), and the reader of
each engine, imported only when asked for (system/metrics.py's collector runs in every API process)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

STATE_READERS = {"rq": "system.engines.rq:broker_state", "saq": "system.engines.saq.state:broker_state"}


@dataclass(frozen=True)
class BrokerState:
    """Queue and job counts and worker states, read from Valkey at scrape time.

    `started`: jobs a worker is running; `scheduled`: jobs waiting for a retry's backoff; `failed`: the
    dead-letter queue; `busy_workers`/`idle_workers`: worker PROCESSES with and without a job in hand."""

    queue_depth: int
    started: int
    scheduled: int
    failed: int
    busy_workers: int
    idle_workers: int


def state_reader(engine: str) -> Callable[[Redis, str], BrokerState]:
    """`read(connection, queue_name)`: the engine's BrokerState through a sync client."""
    module, _, name = STATE_READERS[engine].partition(":")
    reader: Callable[[Redis, str], BrokerState] = getattr(importlib.import_module(module), name)
    return reader
