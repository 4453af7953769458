"""The audit classifies real RQ jobs in a real Valkey: finished, dead-lettered with a reason, or lost."""

from __future__ import annotations

import csv
from pathlib import Path

import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from loadtests.faults.audit import JOB_COLUMNS, audit_jobs, write_jobs
from loadtests.faults.engine_jobs import RqJobs
from loadtests.faults.timeline import JobTracker
from system.retry_policy import ERROR_META_KEY, on_job_failure


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
