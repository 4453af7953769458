"""The SAQ sweep against the session's Valkey: a dead worker's job stays recoverable even when the worker
that sweeps it is SIGKILLed half-way (system/engines/saq/queue.py, "The sweep keeps a job on the active
list"): seen in the worker-kills-saq fault run, where such a job was left `aborting` on no list, lost."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis as AsyncRedis
from saq.job import Job, Status

from system.engines.saq import queue as saq_queue
from system.engines.saq.queue import JOB_FUNCTION, SWEPT_ERROR, RagQueue, job_options
from system.settings import SystemSettings


class SweeperKilled(BaseException):
    """Stands for the SIGKILL of the sweeping worker: nothing after it runs."""


async def abandoned_job(queue: RagQueue, settings: SystemSettings) -> Job:
    """A job its worker took up and then died holding: active, its last heartbeat long ago."""
    job = await queue.enqueue(JOB_FUNCTION, query="q", **job_options(settings))
    assert job is not None
    taken = await queue.dequeue(timeout=1)
    assert taken is not None and taken.key == job.key
    taken.attempts += 1
    taken.status = Status.ACTIVE
    taken.started = taken.touched = int(time.time() * 1000) - 60_000  # its heartbeat TTL is 10 s
    await queue.redis.set(taken.id, queue.serialize(taken))
    return taken


async def test_a_sweeper_killed_half_way_leaves_the_job_for_the_next_sweep(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SystemSettings(redis_url=redis_url, queue_name="sweep-test")
    redis = AsyncRedis.from_url(redis_url)
    queue = RagQueue(redis, settings.queue_name)
    try:
        job = await abandoned_job(queue, settings)

        async def killed(*args: object, **kwargs: object) -> None:
            raise SweeperKilled

        with monkeypatch.context() as patch:  # the sweeper dies after taking the job, before re-queueing it
            patch.setattr(RagQueue, "retry", killed)
            patch.setattr(RagQueue, "finish", killed)
            with pytest.raises(SweeperKilled):
                await queue.sweep()
        stored = await queue.job(job.key)
        assert stored is not None and stored.status == Status.ABORTING
        assert await redis.lrange(queue.keys.active, 0, -1) == [job.id.encode()]  # still where sweeps look

        await redis.delete(queue.keys.sweep_lock)  # the dead sweeper's lock has expired
        monkeypatch.setattr(saq_queue, "STARTING_GRACE_S", 0.0)  # seen once is seen long enough
        assert await queue.sweep() == []  # the first sighting of the `aborting` job on the active list
        await redis.delete(queue.keys.sweep_lock)
        assert await queue.sweep() == [job.id]
        retried = await queue.job(job.key)
        assert retried is not None and retried.status == Status.QUEUED and retried.error == SWEPT_ERROR
        assert retried.attempts == 1  # the dead worker's attempt; the next worker makes the second
        assert await redis.lrange(queue.keys.active, 0, -1) == []
        assert await redis.zscore(queue.keys.incomplete, job.id) is not None  # waiting for its retry
    finally:
        await redis.aclose()
