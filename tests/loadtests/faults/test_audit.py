"""The audit classifies real RQ and SAQ jobs in a real Valkey: finished, dead-lettered with a reason, or
lost."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from saq.job import Status

from loadtests.faults.audit import JOB_COLUMNS, audit_jobs, write_jobs
from loadtests.faults.engine_jobs import RqJobs, SaqJobs
from loadtests.faults.timeline import JobTracker
from system.connections import async_connection
from system.engines.saq.queue import JOB_FUNCTION, SWEPT_ERROR, job_options, job_queue
from system.retry_policy import ERROR_META_KEY, on_job_failure
from system.settings import SystemSettings


def test_audit_tells_finished_dead_lettered_and_lost_jobs_apart(redis_url: str, tmp_path: Path) -> None:
    connection = redis.Redis.from_url(redis_url)
    queue = Queue("audit", connection=connection)
    done = queue.enqueue("builtins.len", "abc")
    broken = queue.enqueue("builtins.int", "not a number")
    SimpleWorker([queue], connection=connection, exception_handlers=[on_job_failure]).work(burst=True)
    waiting = queue.enqueue("builtins.len", "never run")  # queued after the worker left: still waiting
    stuck = queue.enqueue("builtins.len", "xyz")
    stuck.set_status(JobStatus.STARTED)  # as if its worker had died holding it
    silent = queue.enqueue("builtins.len", "no reason")
    silent.set_status(JobStatus.FAILED)  # failed, but nothing says why
    accepted = [
        (done.id, 0.1),
        (broken.id, 0.2),
        (waiting.id, 0.3),
        (stuck.id, 0.4),
        (silent.id, 0.5),
        ("8a5d0c4e-0000-4000-8000-000000000000", 0.6),  # accepted, then gone from Valkey
    ]

    jobs = RqJobs(connection, "audit")
    audit = audit_jobs(jobs, accepted)

    verdicts = {job.job_id: job for job in audit.jobs}
    assert verdicts[done.id].final_status == "finished" and verdicts[done.id].attempts == 1
    assert verdicts[broken.id].final_status == "failed"
    assert verdicts[broken.id].reason_class == "ValueError"
    assert Job.fetch(broken.id, connection=connection).meta[ERROR_META_KEY].startswith("ValueError")
    assert [verdicts[i].final_status for i in (waiting.id, stuck.id, silent.id)] == ["lost"] * 3
    assert verdicts[waiting.id].error == "left queued" and verdicts[stuck.id].error == "left started"
    assert (audit.count("finished"), audit.count("failed"), audit.count("lost")) == (1, 1, 4)
    assert audit.lost_ids == [waiting.id, stuck.id, silent.id, accepted[-1][0]]
    assert audit.dead_letter_reasons() == {"ValueError": 1}

    write_jobs(tmp_path / "jobs.csv", audit)
    with (tmp_path / "jobs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == JOB_COLUMNS and len(rows) == len(accepted)

    tracker = JobTracker(jobs.statuses, lambda: accepted)
    assert tracker.update()
    assert (tracker.finished, tracker.failed, len(tracker.open)) == (1, 2, 3)  # `silent` failed too
    assert not tracker.all_ended
    connection.close()


async def saq_jobs_in_every_state(redis_url: str, queue_name: str) -> dict[str, str]:
    """Jobs put in each state by SAQ's own queue calls, as its workers and sweep would; name -> job key."""
    settings = SystemSettings(redis_url=redis_url, queue_name=queue_name)
    redis_client = async_connection(settings, max_connections=4)
    queue = job_queue(settings, redis_client)
    keys: dict[str, str] = {}
    try:
        for name in ("done", "broken", "swept", "running", "silent", "waiting"):  # waiting: last in line
            job = await queue.enqueue(JOB_FUNCTION, query=name, **job_options(settings))
            assert job is not None
            keys[name] = job.key
            if name in ("done", "broken", "swept", "running", "silent"):
                dequeued = await queue.dequeue(timeout=1)
                assert dequeued is not None and dequeued.key == job.key
                dequeued.attempts += 1
                await dequeued.update(status=Status.ACTIVE)
                job = dequeued
            if name == "done":
                await queue.finish(job, Status.COMPLETE, result={"answer": "yes"})
            elif name == "broken":
                trace = 'Traceback (most recent call last):\n  File "x.py"\nValueError: not a number'
                await queue.finish(job, Status.FAILED, error=trace)
            elif name == "swept":
                await queue.finish(job, Status.ABORTED, error=SWEPT_ERROR)
            elif name == "silent":
                await queue.finish(job, Status.FAILED)  # failed, but nothing says why
    finally:
        await redis_client.aclose()
    return keys


def test_audit_reads_saq_jobs_through_the_engine(redis_url: str) -> None:
    keys = asyncio.run(saq_jobs_in_every_state(redis_url, "audit-saq"))
    connection = redis.Redis.from_url(redis_url)
    gone = "8a5d0c4e-0000-4000-8000-000000000001"  # accepted, then gone from Valkey
    names = [*keys, "gone"]
    accepted = [(keys.get(name, gone), i / 10) for i, name in enumerate(names)]
    jobs = SaqJobs(connection, "audit-saq")

    audit = audit_jobs(jobs, accepted)

    verdicts = dict(zip(names, audit.jobs, strict=True))
    assert verdicts["done"].final_status == "finished" and verdicts["done"].attempts == 1
    assert verdicts["broken"].final_status == "failed"
    assert verdicts["broken"].error == "ValueError: not a number"
    assert verdicts["swept"].final_status == "failed" and verdicts["swept"].error == SWEPT_ERROR
    assert [verdicts[n].final_status for n in ("running", "silent", "waiting", "gone")] == ["lost"] * 4
    assert verdicts["waiting"].error == "left queued" and verdicts["running"].error == "left active"
    assert verdicts["silent"].error == "failed without a reason"
    assert verdicts["gone"].error == "not in Valkey"
    assert audit.dead_letter_reasons() == {"ValueError": 1, "AbandonedJobError": 1}

    tracker = JobTracker(jobs.statuses, lambda: accepted)
    assert tracker.update()
    assert (tracker.finished, tracker.failed, len(tracker.open)) == (1, 3, 3)  # `silent` failed too
    connection.close()
