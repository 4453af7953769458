"""What the Locust scenarios share: their settings, the per-request sample log, the open-loop schedule.

Imported only by Locust processes, after `import locust` (it uses gevent, which Locust has patched in);
never by the sweep, which configures a scenario through the RAGLOAD_* environment variables below.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from pathlib import Path
from typing import Any, Literal

import gevent
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loadtests.locust.shapes import ArrivalSchedule, PoissonArrivals
from loadtests.sweep.samples import RawSampleWriter, Sample

NETWORK_MARGIN_S = 2.0  # a long-poll answers at its `wait`; the socket may wait this much longer
LONG_POLL_MAX_S = 30.0  # the API's cap on `wait` (docs/architecture.md, "HTTP contracts")
QUESTIONS = (
    "How do I serialize an object to a JSON formatted string?",
    "How can I read rows from a CSV file as dictionaries?",
    "What does pathlib offer for joining file system paths?",
    "How do I compile a regular expression and reuse it?",
    "How can I store a Python object on disk with pickle?",
    "What is a job queue and why do workers poll it?",
    "Why do closed-loop load generators hide tail latency?",
    "How do I parse command line arguments?",
)
# A request's tag, appended to its query so that no two requests of a cell share their content (the mock keys
# each call's latency draw on it). Punctuation only: the mock's lexical embedding reads [a-z0-9] words, so a
# tagged question retrieves exactly the passages of the plain one (tests/loadtests/test_requests.py).
TAG_SYMBOLS = "!#$%&*+-/:;<=>?@"
TAG_LENGTH = 12  # 48 bits: two requests of one run share a tag with odds of about n² / 2⁴⁹


class ScenarioSettings(BaseSettings):
    """RAGLOAD_* variables; the defaults suit `make locust-ui` against `ragload up`."""

    model_config = SettingsConfigDict(env_prefix="RAGLOAD_", frozen=True, extra="ignore")

    api_url: str = "http://127.0.0.1:8000"
    baseline_url: str = "http://127.0.0.1:8001"
    samples_dir: Path | None = None  # unset: no raw samples written (e.g. the web UI)
    deadline_s: float = Field(default=30.0, gt=0)
    load: Literal["closed", "open"] = "closed"
    users: int = Field(default=1, ge=0)  # closed loop: chat users of the cell's shape
    rate: float = Field(default=1.0, gt=0)  # open loop: arrivals per second over all generator processes
    duration_s: float = Field(default=0.0, ge=0)  # the cell's shape length (0: no shape, Locust's own -u/-t)
    seed: int = 0
    think_time_s: float = Field(default=0.0, ge=0)
    queued_mode: Literal["longpoll", "poll"] = "longpoll"
    poll_interval_s: float = Field(default=0.25, gt=0)
    sync_mode: str = "threadpool"  # label written into the samples; the baseline decides its real mode
    probe_interval_s: float = Field(default=0.5, gt=0)
    top_k: int = Field(default=4, ge=1)
    generator_processes: int = Field(default=1, ge=1)
    architecture: Literal["queued", "sync"] = "queued"  # the system under test (labels the probe samples)
    go_file: Path | None = None  # set: hold the load until this file exists (the sweep prepares meanwhile)

    @property
    def probe_mode(self) -> str:
        return self.queued_mode if self.architecture == "queued" else self.sync_mode


@lru_cache(maxsize=1)
def settings() -> ScenarioSettings:
    return ScenarioSettings()


class SampleLog:
    """This process's raw sample file (opened on the first sample: a Locust master never writes one)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._writer: RawSampleWriter | None = None

    def write(self, sample: Sample) -> None:
        if self.directory is None:
            return
        if self._writer is None:
            self._writer = RawSampleWriter(self.directory / f"raw-{os.getpid()}.csv")
        self._writer.write(sample)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


GO_POLL_S = 0.02


def wait_for_go() -> None:
    """Block this greenlet until RAGLOAD_GO_FILE exists (at once when none is set)."""
    go_file = settings().go_file
    while go_file is not None and not go_file.exists():
        gevent.sleep(GO_POLL_S)


@lru_cache(maxsize=1)
def sample_log() -> SampleLog:
    return SampleLog(settings().samples_dir)


_schedule: dict[str, ArrivalSchedule] = {}


def arrival_schedule(worker_index: int) -> ArrivalSchedule:
    """This process's share of the open-loop arrivals, started at the first claim (the test's start).

    With P generator processes each runs a Poisson process at rate/P with its own seed: the sum of
    independent Poisson processes is a Poisson process at the total rate.
    """
    if "current" not in _schedule:
        s = settings()
        arrivals = PoissonArrivals(
            rate=s.rate / s.generator_processes,
            duration_s=s.duration_s or 3600.0,
            pool=1,
            seed=s.seed * 1000 + worker_index,
        )
        _schedule["current"] = ArrivalSchedule(arrivals, start=time.time(), clock=time.time)
    return _schedule["current"]


@dataclass
class Start:
    """When a request counts as started: its scheduled arrival (open loop) or now (closed loop)."""

    epoch: float  # when the request was due (seconds since the epoch)
    perf: float  # perf_counter() when it was actually sent
    lag_ms: float  # how late it was sent after it was due (0 in closed loop)
    request: str = ""  # the request's name: which request of the load this is (see request_query)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.perf) * 1000 + self.lag_ms

    @property
    def query(self) -> str:
        return request_query(self.request)


class UserSequence:
    """A closed-loop user's requests: user u of generator process p sends `u<p>.<u>.<n>` as its n-th.

    Users are numbered in the order this process starts them; whichever order that is, the cells at one load
    get the same set of user sequences, so the n-th request of user u is the same request in each of them.
    """

    _numbers = itertools.count()

    def __init__(self, worker_index: int) -> None:
        self.prefix = f"u{worker_index}.{next(UserSequence._numbers)}"
        self.sent = 0

    def next_name(self) -> str:
        self.sent += 1
        return f"{self.prefix}.{self.sent - 1}"


def next_start(worker_index: int, user: UserSequence | None = None) -> Start | None:
    """Closed loop: now, the user's next request. Open loop: sleep until the next arrival this user claims
    (request `a<p>.<i>`: the i-th arrival of generator process p); None when over."""
    if settings().load == "closed":
        name = user.next_name() if user is not None else ""
        return Start(time.time(), time.perf_counter(), 0.0, name)
    claimed = arrival_schedule(worker_index).claim()
    if claimed is None:
        return None
    delay = claimed.due - time.time()
    if delay > 0:
        gevent.sleep(delay)
    lag_ms = max(0.0, time.time() - claimed.due) * 1000
    return Start(claimed.due, time.perf_counter(), lag_ms, f"a{worker_index}.{claimed.position}")


_listening: set[int] = set()


def install_listeners(events: Any) -> None:
    """Close the sample file when Locust quits (idempotent: every scenario module calls it)."""
    if id(events) in _listening:
        return
    _listening.add(id(events))
    events.quitting.add_listener(lambda **_: sample_log().close())


def request_query(name: str, seed: int | None = None) -> str:
    """The query of request `name` under the cell's seed: a question and a tag, both chosen by a stable hash
    of (seed, name). Every cell at one load in one trial shares the seed, so request `a0.17` asks the same
    thing of the queued system and of the baseline, and the mock draws the same upstream latency for it."""
    seed = settings().seed if seed is None else seed
    number = int.from_bytes(blake2b(f"{seed}|{name}".encode(), digest_size=8).digest(), "little")
    question = QUESTIONS[number % len(QUESTIONS)]
    number //= len(QUESTIONS)
    tag = "".join(TAG_SYMBOLS[(number >> (4 * i)) & 0xF] for i in range(TAG_LENGTH))
    return f"{question} [{tag}]"


def outcome_of(status: int, elapsed_ms: float, deadline_s: float) -> str:
    """ok: a 2xx in time. timeout: anything at or past the deadline, or the server's own 504. error: else."""
    if elapsed_ms >= deadline_s * 1000 or status == 504:
        return "timeout"
    return "ok" if 200 <= status < 300 else "error"


def fire_e2e(environment: Any, name: str, sample: Sample) -> None:
    """One custom Locust entry for the end-to-end request, next to its HTTP entries."""
    environment.events.request.fire(
        request_type="E2E",
        name=name,
        response_time=sample.latency_ms,
        response_length=0,
        exception=None
        if sample.outcome == "ok"
        else RuntimeError(f"{sample.outcome} (HTTP {sample.status})"),
        context={},
    )
