"""The SAQ engine's dead-letter queue for `ragload dlq --engine saq` (system/dlq.py runs the command).

SAQ has no failed-job registry: a failed or aborted job stays under its own key until its ttl
(FAILURE_TTL_S), and system/engines/saq/queue.py indexes each one in a sorted set (score: when its key
expires). Listing reads that index and skips entries whose job has expired or is no longer dead (requeued
and running again). A requeued job is enqueued again under the same id with its attempt count reset, so it
gets its retries anew (the operator's deliberate retry, after fixing the cause); `/job-status` follows it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from saq.job import UNSUCCESSFUL_TERMINAL_STATUSES, Status

from system.connections import async_connection
from system.engines.protocol import one_line_error
from system.engines.saq.queue import SaqKeys, job_queue
from system.settings import SystemSettings

DEAD = {status.value for status in UNSUCCESSFUL_TERMINAL_STATUSES}


class SaqDeadLetters:
    """What `ragload dlq` needs (system/dlq.py, DeadLetters) over SAQ's keys."""

    def __init__(self, connection: Redis, queue_name: str, redis_url: str) -> None:
        self.connection = connection
        self.keys = SaqKeys(queue_name)
        self.redis_url = redis_url

    def _stored(self, job_id: str) -> dict[str, Any] | None:
        raw = self.connection.get(self.keys.job(job_id))
        return dict(json.loads(raw)) if raw else None

    def ids(self) -> list[str]:
        listed = self.connection.zrangebyscore(self.keys.dead_letters, time.time() * 1000, "+inf")
        return [job_id for job_id in (key.decode() for key in listed) if job_id in self]  # type: ignore[union-attr]

    def __contains__(self, job_id: object) -> bool:
        stored = self._stored(str(job_id))
        return stored is not None and stored.get("status") in DEAD

    def describe(self, job_id: str) -> dict[str, Any] | None:
        """The fields of system/dlq.py's DeadJob; None if there is no such job."""
        stored = self._stored(job_id)
        if stored is None:
            return None
        trace = str(stored.get("error") or "")
        return {
            "job_id": job_id,
            "func": str(stored.get("function", "?")),
            "args": [f"{name}={value!r}"[:200] for name, value in (stored.get("kwargs") or {}).items()],
            "enqueued_at": _iso_ms(stored.get("queued")),
            "ended_at": _iso_ms(stored.get("completed")),
            "attempts": stored.get("attempts"),
            "error": one_line_error(trace) or f"job {stored.get('status')}",
            "traceback": trace,
        }

    def jobs(self) -> Iterator[dict[str, Any]]:
        for job_id in self.ids():
            described = self.describe(job_id)
            if described is not None:
                yield described

    def requeue(self, job_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        return asyncio.run(self._requeue(job_ids))

    async def _requeue(self, job_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        settings = SystemSettings(redis_url=self.redis_url, queue_name=self.keys.queue_name)
        redis = async_connection(settings, max_connections=4)
        queue = job_queue(settings, redis)
        done: list[str] = []
        missing: list[str] = []
        try:
            for job_id in job_ids:
                job = await queue.job(job_id)
                if job is None or job.status not in UNSUCCESSFUL_TERMINAL_STATUSES:
                    missing.append(job_id)
                    continue
                await redis.delete(job.abort_id)  # a sweep's abort signal (5 s) would refuse the enqueue
                job.attempts = 0
                job.error = None
                job.result = None
                job.started = job.completed = job.touched = 0
                job.progress = 0.0
                job.status = Status.NEW
                if await queue.enqueue(job) is None:
                    missing.append(job_id)
                    continue
                await redis.zrem(self.keys.dead_letters, job_id)
                done.append(job_id)
        finally:
            await redis.aclose()
        return done, missing

    def purge(self) -> int:
        ids = self.ids()
        if ids:
            self.connection.delete(*(self.keys.job(job_id) for job_id in ids))
            self.connection.zrem(self.keys.dead_letters, *ids)
        return len(ids)


def _iso_ms(value: object) -> str | None:
    if not isinstance(value, int | float) or not value:
        return None
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="seconds")
