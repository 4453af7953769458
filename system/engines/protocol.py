"""What the queued API and its metrics need of a queue engine, and the engine chosen by the settings.

One implementation per engine: `system/engines/rq.py` (RQ, through system/broker.py) and
`system/engines/saq/` (SAQ). The API never touches an engine's own objects: it sees a `JobView` (the job as
the HTTP contract shows it); what `/metrics` reads at scrape time is system/engines/broker_state.py. Every
method raises redis.exceptions.RedisError when the broker cannot be reached (the API answers 503) and
system.durability.BrokerNotDurable when a job cannot be confirmed on disk.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from system.settings import SystemSettings

PublicStatus = Literal["queued", "started", "finished", "failed"]
ENDED: frozenset[PublicStatus] = frozenset({"finished", "failed"})
# The implementations, imported only when chosen: an RQ deployment never loads SAQ, nor an SAQ one RQ's API.
API_ENGINES = {"rq": "system.engines.rq:RqApiEngine", "saq": "system.engines.saq.api:SaqApiEngine"}


@dataclass(frozen=True)
class JobView:
    """A job as `/job-status` shows it. `cursor` is the engine's own bookmark for `wait_for_end` (RQ: the
    latest entry of the job's result stream), opaque to the API."""

    job_id: str
    status: PublicStatus
    result: dict[str, Any] | None = None  # RESULT, once finished
    error: str | None = None  # one line, once failed
    timings_ms: dict[str, float] = field(default_factory=dict)
    cursor: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ENDED


class ApiEngine(Protocol):
    """The API's side of one engine (one instance per API process, made in the app's lifespan)."""

    name: str
    commands: AsyncRedis  # short commands: the shared breaker's state, the durability marker
    sync: Redis  # for the scrape-time collector, which runs off the event loop

    async def ping(self) -> None: ...
    async def queue_depth(self) -> int: ...

    async def enqueue(self, job_id: str, query: str, top_k: int) -> None:
        """Enqueue the job, with the settings' timeout, retries and TTLs; with BROKER_DURABILITY=fsync,
        return only once it is on the broker's disk (system/durability.py)."""

    async def confirm_on_disk(self) -> None: ...
    async def job(self, job_id: str) -> JobView | None: ...

    async def wait_for_end(self, view: JobView, timeout_s: float) -> JobView:
        """The job once it has ended, or as it is after `timeout_s`: woken by the broker, never polled."""

    async def aclose(self) -> None: ...


def new_job_id() -> str:
    return str(uuid.uuid4())


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def api_engine(settings: SystemSettings) -> ApiEngine:
    engine: ApiEngine = _load(API_ENGINES[settings.queue_engine])(settings)
    return engine


def one_line_error(trace: str) -> str:
    """`ErrorClass: message` from a traceback's last line, without the class's module path ("" if none)."""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    if not lines:
        return ""
    error_class, sep, message = lines[-1].partition(": ")
    return f"{error_class.rsplit('.', 1)[-1]}{sep}{message}"
