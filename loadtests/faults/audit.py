"""The audit after a fault run's drain: what became of every accepted job (jobs.csv, outcome.json counts).

Each accepted job id is read through its engine (loadtests/faults/engine_jobs.py, in batches) and classified:
- `finished`: the engine says finished;
- `failed`: the engine says failed (RQ: failed, stopped or canceled; SAQ: failed or aborted) **and** a reason
  is on record — RQ: the worker's retry policy's `last_error` (system/retry_policy.py) or the last line of
  RQ's failure result; SAQ: the job's error, its traceback's last line or the sweep's AbandonedJobError;
- `lost`: anything else — still queued, started, scheduled or active after the drain, failed without any
  reason, or gone from Valkey altogether. `lost` is counted from what Valkey holds, never assumed.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.faults.engine_jobs import EngineJobs, StoredJob

FETCH_BATCH = 500  # jobs per pipelined fetch: one round trip each, a few MB at most
JOB_COLUMNS = ("job_id", "accepted_t", "final_status", "attempts", "error")


@dataclass(frozen=True)
class JobVerdict:
    job_id: str
    accepted_t: float
    final_status: str  # finished | failed | lost
    attempts: int
    error: str  # the dead-letter reason; for a lost job what was found instead

    @property
    def reason_class(self) -> str:
        """`AbandonedJobError`, `UpstreamUnavailable`, … (the text before the first colon)."""
        return self.error.split(":", 1)[0].strip() or "unknown"


@dataclass(frozen=True)
class Audit:
    jobs: list[JobVerdict]

    def count(self, status: str) -> int:
        return sum(1 for job in self.jobs if job.final_status == status)

    @property
    def lost_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs if job.final_status == "lost"]

    def dead_letter_reasons(self) -> dict[str, int]:
        return dict(Counter(job.reason_class for job in self.jobs if job.final_status == "failed"))

    def retries(self) -> int:
        """Retries that happened: each failed attempt of a job, but the last one of a dead-lettered job."""
        return sum(
            job.attempts - 1 if job.final_status in ("finished", "failed") else job.attempts
            for job in self.jobs
            if job.attempts
        )


def _batches(items: Sequence[tuple[str, float]], size: int) -> Iterator[Sequence[tuple[str, float]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def classify(job: StoredJob | None, job_id: str, accepted_t: float) -> JobVerdict:
    if job is None:
        return JobVerdict(job_id, accepted_t, "lost", 0, "not in Valkey")
    if job.status == "finished":
        return JobVerdict(job_id, accepted_t, "finished", job.attempts, "")
    if job.status == "failed":
        if job.error:
            return JobVerdict(job_id, accepted_t, "failed", job.attempts, job.error[:300])
        return JobVerdict(job_id, accepted_t, "lost", job.attempts, f"{job.state} without a reason")
    return JobVerdict(job_id, accepted_t, "lost", job.attempts, f"left {job.state}")


def audit_jobs(jobs: EngineJobs, accepted: Sequence[tuple[str, float]]) -> Audit:
    """Classify every (job id, accepted t); raises RedisError if the broker cannot be read."""
    verdicts: list[JobVerdict] = []
    for batch in _batches(accepted, FETCH_BATCH):
        stored = jobs.stored([job_id for job_id, _ in batch])
        verdicts += [classify(job, job_id, t) for job, (job_id, t) in zip(stored, batch, strict=True)]
    return Audit(verdicts)


def write_jobs(path: Path, audit: Audit) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(JOB_COLUMNS)
        for job in audit.jobs:
            out.writerow([job.job_id, round(job.accepted_t, 3), job.final_status, job.attempts, job.error])
