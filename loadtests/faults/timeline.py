"""The timeline of a fault run: one row every 0.5 s (timeline.csv; docs/architecture.md, "A fault run
folder").

`finished` and `dead_lettered` count this scenario's own accepted jobs (`JobTracker`: the status of each job
not yet ended, read through the engine, loadtests/faults/engine_jobs.py), not registry sizes, which a
previous scenario's late job would inflate. Read-only on the broker: `queued` and `running` are what
`/metrics` reads of the engine (system/engines/broker_state.py: on RQ never a registry's `count`, whose
cleanup of the started registry would itself handle abandoned jobs without the workers' exception
handlers, and so change what is being measured). Retries come from the queued system's Prometheus files
(the workers' `ragload_retries` counter, multiprocess mode, both engines), read directly, for the same
reason. With the broker down the Valkey columns stay empty, `breaker` is `unknown` and `broker_up` 0.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from redis import Redis
from redis.exceptions import RedisError

from system.engines.broker_state import state_reader
from system.engines.protocol import PublicStatus
from system.rag.breaker import shared_breaker_state

SAMPLE_INTERVAL_S = 0.5
BROKER_TIMEOUT_S = 0.4  # a sample must not wait longer than its interval on a dead broker
TIMELINE_COLUMNS = (
    "t",
    "offered",
    "accepted",
    "rejected",
    "finished",
    "dead_lettered",
    "retried",
    "queued",
    "running",
    "workers",
    "breaker",
    "broker_up",
)
RETRIES_METRIC = "ragload_retries"  # system/metrics.py: RETRIES, labels layer and reason


@dataclass(frozen=True)
class BrokerCounts:
    queued: int
    running: int
    breaker: str


def broker_connection(redis_url: str) -> Redis:
    return Redis.from_url(redis_url, socket_timeout=BROKER_TIMEOUT_S, socket_connect_timeout=BROKER_TIMEOUT_S)


class BrokerReader:
    """Queue depth, running jobs and the breaker, read without side effects; None when Valkey is down."""

    def __init__(self, connection: Redis, queue_name: str, engine: str) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.read_state = state_reader(engine)

    def read(self) -> BrokerCounts | None:
        try:
            state = self.read_state(self.connection, self.queue_name)
            breaker = shared_breaker_state(self.connection)
        except RedisError:
            return None
        return BrokerCounts(state.queue_depth, state.started, breaker)


class JobTracker:
    """How many of the accepted jobs have finished or failed, asking Valkey only about the open ones."""

    def __init__(
        self,
        statuses: Callable[[Sequence[str]], list[PublicStatus | None]],
        accepted: Callable[[], Sequence[tuple[str, float]]],
    ) -> None:
        self.statuses = statuses  # the engine's reading (EngineJobs.statuses), RedisError if Valkey is down
        self.accepted = accepted  # the submitter's growing list of (job id, accepted t)
        self.seen = 0
        self.open: set[str] = set()
        self.finished = 0
        self.failed = 0

    def update(self) -> bool:
        """Refresh the counts; False if Valkey could not be read (the counts are then unchanged)."""
        jobs = self.accepted()
        fresh = jobs[self.seen :]
        self.open.update(job_id for job_id, _ in fresh)
        self.seen += len(fresh)
        pending = list(self.open)
        try:
            statuses = self.statuses(pending)
        except RedisError:
            return False
        for job_id, status in zip(pending, statuses, strict=True):
            if status == "finished":
                self.finished += 1
            elif status == "failed":
                self.failed += 1
            else:
                continue
            self.open.discard(job_id)
        return True

    @property
    def all_ended(self) -> bool:
        return not self.open and self.seen == len(self.accepted())


def retries_so_far(metrics_dir: str | None) -> int | None:
    """Job retries the workers have scheduled so far (every process's counter file summed)."""
    if not metrics_dir:
        return None
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)
    total = 0.0
    for family in registry.collect():
        if family.name == RETRIES_METRIC:
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


class TimelineSampler:
    """A thread that appends a row every 0.5 s; counts are relative to the scenario's start."""

    def __init__(
        self,
        reader: BrokerReader,
        tracker: JobTracker,
        clock: Callable[[], float],
        submitted: Callable[[], tuple[int, int, int]],
        live_workers: Callable[[], int],
        metrics_dir: str | None,
        on_row: Callable[[dict[str, Any]], None] = lambda row: None,
    ) -> None:
        self.reader = reader
        self.tracker = tracker
        self.lock = threading.Lock()  # the drain calls tracker.update() from another thread
        self.clock = clock
        self.submitted = submitted
        self.live_workers = live_workers
        self.metrics_dir = metrics_dir
        self.on_row = on_row
        self.rows: list[dict[str, Any]] = []
        self.base_retries = retries_so_far(metrics_dir) or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-timeline", daemon=True)

    def start(self) -> TimelineSampler:
        self.sample()  # t = 0
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        self.sample()  # the last row: the state at the end of the drain
        return self.rows

    def all_ended(self) -> bool:
        """True once every accepted job has finished or failed (asks Valkey; False if it is down)."""
        with self.lock:
            return self.tracker.update() and self.tracker.all_ended

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, SAMPLE_INTERVAL_S * len(self.rows) - self.clock())):
            self.sample()

    def sample(self) -> dict[str, Any]:
        t = self.clock()
        offered, accepted, rejected = self.submitted()
        counts = self.reader.read()
        with self.lock:
            tracked = counts is not None and self.tracker.update()
        retries = retries_so_far(self.metrics_dir)
        row: dict[str, Any] = {
            "t": round(t, 3),
            "offered": offered,
            "accepted": accepted,
            "rejected": rejected,
            "retried": retries - self.base_retries if retries is not None else None,
            "workers": self.live_workers(),
            "broker_up": int(counts is not None),
            "breaker": counts.breaker if counts else "unknown",
        }
        if counts is not None:
            row |= {"queued": counts.queued, "running": counts.running}
        if tracked:
            row |= {"finished": self.tracker.finished, "dead_lettered": self.tracker.failed}
        self.rows.append(row)
        self.on_row(row)
        return row


def write_timeline(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=TIMELINE_COLUMNS, extrasaction="ignore")
        out.writeheader()
        for row in rows:
            out.writerow({k: "" if row.get(k) is None else row[k] for k in TIMELINE_COLUMNS})
