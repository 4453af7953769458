"""The SAQ queue's state for `/metrics` and the harness, read with a sync client (the scrape runs off the
event loop) from SAQ's keys (system/engines/saq/queue.py, SaqKeys): read-only, nothing is changed.

Worker processes register through SAQ's worker info (renewed every WORKER_INFO_INTERVAL_S, expiring soon
after a worker dies); each says in its metadata how many jobs it has in hand (system/engines/saq/worker.py),
so `busy` = processes with at least one, as of their last renewal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from saq.job import Job

from system.engines.broker_state import BrokerState
from system.engines.saq.queue import SaqKeys

IN_FLIGHT = "in_flight"  # worker metadata: jobs in hand
PID = "pid"
HOSTNAME = "hostname"
CONCURRENCY = "concurrency"


@dataclass(frozen=True)
class SaqWorker:
    """One registered worker process, as its latest worker info says."""

    worker_id: str
    pid: int | None
    hostname: str | None
    concurrency: int | None
    in_flight: int


def registered_workers(connection: Redis, queue_name: str) -> list[SaqWorker]:
    keys = SaqKeys(queue_name)
    info_keys: list[bytes] = list(connection.zrangebyscore(keys.stats, time.time() * 1000, "+inf"))  # type: ignore[arg-type]
    if not info_keys:
        return []
    workers = []
    for key, raw in zip(info_keys, connection.mget(info_keys), strict=True):
        if not raw:
            continue  # expired between the two reads
        metadata: dict[str, Any] = json.loads(raw).get("metadata") or {}
        workers.append(
            SaqWorker(
                worker_id=key.decode().rsplit(":", 1)[-1],
                pid=metadata.get(PID),
                hostname=metadata.get(HOSTNAME),
                concurrency=metadata.get(CONCURRENCY),
                in_flight=int(metadata.get(IN_FLIGHT, 0)),
            )
        )
    return workers


def stored_jobs(connection: Redis, queue_name: str, job_keys: Sequence[str]) -> list[Job | None]:
    """The jobs as SAQ stored them (None: no such key), in one MGET: SAQ's own `Queue.jobs`, done with a
    sync client (SAQ's queue is asyncio-only; the harness reads from threads). The job dicts are SAQ's
    `Job.to_dict()`, turned back into SAQ's Job as its `Queue.deserialize` does, without a queue object."""
    if not job_keys:
        return []
    keys = SaqKeys(queue_name)
    raws: list[bytes | None] = connection.mget([keys.job(key) for key in job_keys])  # type: ignore[assignment]
    jobs: list[Job | None] = []
    for raw in raws:
        if not raw:
            jobs.append(None)
            continue
        fields: dict[str, Any] = json.loads(raw)
        fields.pop("queue", None)
        jobs.append(Job(**fields))
    return jobs


def active_job_keys(connection: Redis, queue_name: str) -> list[str]:
    """The keys of the jobs in SAQ's active list (dequeued by a worker, not yet ended or swept)."""
    keys = SaqKeys(queue_name)
    ids: list[bytes] = connection.lrange(keys.active, 0, -1)  # type: ignore[assignment]
    return [keys.job_key(job_id.decode()) for job_id in ids]


def broker_state(connection: Redis, queue_name: str) -> BrokerState:
    keys = SaqKeys(queue_name)
    pipe = connection.pipeline(transaction=False)
    pipe.llen(keys.queued)
    pipe.llen(keys.active)
    pipe.zcard(keys.incomplete)
    pipe.zcount(keys.dead_letters, time.time() * 1000, "+inf")  # entries whose job has not expired yet
    queued, active, incomplete, dead = (int(n) for n in pipe.execute())
    workers = registered_workers(connection, queue_name)
    busy = sum(1 for worker in workers if worker.in_flight > 0)
    return BrokerState(
        queue_depth=queued,
        started=active,
        scheduled=max(0, incomplete - queued - active),  # SAQ's own `info()` counts them so
        failed=dead,
        busy_workers=busy,
        idle_workers=len(workers) - busy,
    )
