"""Server-side sampling during a cell, every 0.5 s: queue depth, busy workers, CPU of each role.

A thread in the sweep process (which never imports Locust). CPU is psutil's per-process `cpu_percent`
(% of one core since the previous sample), summed over a role's processes and their children (uvicorn
workers, the worker pool's forks). `cpu_generator` is the BUSIEST generator process, not their sum: one
Locust process is one core, so that is the figure that says whether the generator was the limit.
`cpu_machine` is the whole machine's CPU in the same unit (200 % = both cores of a 2-core box busy), whoever
uses it: the figure that says whether the testbed, not the architecture, was the limit.

Memory of the API, the workers and the baseline (`ROLE_MEMORY`), as RSS in MiB (2^20 bytes): `rss_<role>_mb`
is the sum over every process of the role (supervisors such as RQ's pool or uvicorn's parent and helpers
such as RQ's scheduler process included: the role's whole cost, forks' shared pages counted in each),
`processes_<role>` the SERVING processes (the direct children of each supervisor — the pool's workers,
uvicorn's workers — or a lone process: `role_memory`), and `rss_<role>_process_mb` their mean RSS.
RSS, not USS/PSS: psutil's `memory_full_info` reads /proc/PID/smaps, measured at ≈ 3–9 ms per process
against ≈ 0.25 ms for RSS, which at 45 worker processes every 0.5 s would cost the cell a fair share of a
core; RSS overstates what forks cost together (shared pages counted in each).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil
from redis import Redis
from redis.exceptions import RedisError

from system.engines.broker_state import state_reader

SAMPLE_INTERVAL_S = 0.5
ROLES = ("api", "worker", "baseline", "mock", "valkey")
SERVER_COLUMNS = (
    "t",
    "queue_depth",
    "busy_workers",
    "workers",
    "cpu_api",
    "cpu_workers",
    "cpu_baseline",
    "cpu_mock",
    "cpu_valkey",
    "cpu_generator",
    "cpu_machine",
    "rss_api_mb",
    "rss_workers_mb",
    "rss_baseline_mb",
    "processes_api",
    "processes_workers",
    "processes_baseline",
    "rss_api_process_mb",
    "rss_worker_process_mb",
    "rss_baseline_process_mb",
)
MIB = 1024 * 1024
# role → (sum over its processes, serving processes, mean per serving process): the server.csv columns
ROLE_MEMORY = {
    "api": ("rss_api_mb", "processes_api", "rss_api_process_mb"),
    "worker": ("rss_workers_mb", "processes_workers", "rss_worker_process_mb"),
    "baseline": ("rss_baseline_mb", "processes_baseline", "rss_baseline_process_mb"),
}
_ROLE_COLUMN = {"api": "cpu_api", "worker": "cpu_workers", "baseline": "cpu_baseline", "mock": "cpu_mock",
                "valkey": "cpu_valkey"}  # fmt: skip


class CpuMeter:
    """CPU % of one core per process since the previous call, and RSS; keeps the psutil handles between
    calls."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)  # the first call only starts the measurement
            except psutil.Error:
                return None
            self._procs[pid] = proc
        return proc

    def expand(self, pids: Iterable[int]) -> list[int]:
        """The processes and all their descendants, each once (measuring a process twice in one sample
        would read ~0 % the second time: `cpu_percent` measures since the previous call)."""
        found: dict[int, None] = {}
        for pid in pids:
            proc = self._process(pid)
            if proc is None:
                continue
            found[pid] = None
            try:
                found.update((child.pid, None) for child in proc.children(recursive=True))
            except psutil.Error:
                pass
        return list(found)

    def percents(self, pids: Iterable[int]) -> dict[int, float]:
        result: dict[int, float] = {}
        for pid in pids:
            proc = self._process(pid)
            if proc is None:
                continue
            try:
                result[pid] = proc.cpu_percent(None)
            except psutil.Error:
                self._procs.pop(pid, None)
        return result

    def memory(self, pids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """pid → (RSS in bytes, parent pid) of the processes still alive."""
        result: dict[int, tuple[int, int]] = {}
        for pid in pids:
            proc = self._process(pid)
            if proc is None:
                continue
            try:
                result[pid] = (proc.memory_info().rss, proc.ppid())
            except psutil.Error:
                self._procs.pop(pid, None)
        return result


def role_memory(found: Mapping[int, tuple[int, int]]) -> tuple[float, int, float] | None:
    """(RSS sum in MiB, serving processes, mean RSS per serving process in MiB) of one role's processes;
    None when no process of the role was read.

    Serving processes: the direct children of each root of the role (a process whose parent is not in
    the role: RQ's pool parent, uvicorn's supervisor), or the root itself when it has none. Deeper
    descendants are helpers (RQ's scheduler process, a fork's work horse), counted in the sum only."""
    if not found:
        return None
    roots = [pid for pid, (_, ppid) in found.items() if ppid not in found]
    serving: list[int] = []
    for root in roots:
        children = [pid for pid, (_, ppid) in found.items() if ppid == root]
        serving.extend(children or [root])
    total = sum(rss for rss, _ in found.values())
    serving_rss = sum(found[pid][0] for pid in serving)
    return round(total / MIB, 1), len(serving), round(serving_rss / len(serving) / MIB, 1)


class QueueProbe:
    """Queue depth, busy and registered worker processes of one queue of the engine (None when there is no
    broker); SAQ's busy count is as of each worker's last info (every 2 s)."""

    def __init__(self, redis_url: str | None, queue_name: str, engine: str = "rq") -> None:
        self._redis = Redis.from_url(redis_url, socket_timeout=2.0) if redis_url else None
        self._queue_name = queue_name
        self._engine = engine

    def read(self) -> tuple[int | None, int | None, int | None]:
        if self._redis is None:
            return None, None, None
        try:
            state = state_reader(self._engine)(self._redis, self._queue_name)
        except RedisError:
            return None, None, None
        return state.queue_depth, state.busy_workers, state.busy_workers + state.idle_workers

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


class ServerSampler:
    """`start()` a sampling thread, `stop()` it and get the rows (`t` in seconds since the epoch)."""

    def __init__(
        self,
        role_pids: Callable[[], Mapping[str, list[int]]],
        generator_pids: Callable[[], list[int]],
        queue: QueueProbe,
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.role_pids = role_pids
        self.generator_pids = generator_pids
        self.queue = queue
        self.interval_s = interval_s
        self.rows: list[dict[str, Any]] = []
        self._meter = CpuMeter()
        self._cores = psutil.cpu_count() or 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)

    def start(self) -> ServerSampler:
        self.sample()  # primes the CPU meters (psutil's system-wide one too)
        self.rows.clear()
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.rows

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.rows.append(self.sample())
            next_at += self.interval_s

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time()}
        row["queue_depth"], row["busy_workers"], row["workers"] = self.queue.read()
        seen: set[int] = set()
        roles = self.role_pids()
        for role in ROLES:
            if not roles.get(role):
                row[_ROLE_COLUMN[role]] = None  # not ours to watch (an external target) or not running
                row.update(dict.fromkeys(ROLE_MEMORY.get(role, ())))
                continue
            pids = [p for p in self._meter.expand(roles[role]) if p not in seen]
            seen.update(pids)
            row[_ROLE_COLUMN[role]] = round(sum(self._meter.percents(pids).values()), 1)
            if role in ROLE_MEMORY:
                memory = role_memory(self._meter.memory(pids))
                row.update(zip(ROLE_MEMORY[role], memory or (None, None, None), strict=True))
        generator = self._meter.percents(self._meter.expand(self.generator_pids()))
        row["cpu_generator"] = round(max(generator.values(), default=0.0), 1)
        row["cpu_machine"] = round(psutil.cpu_percent(None) * self._cores, 1)
        return row
