"""The RQ job of the queued system: run the RAG pipeline for one question and return RESULT as a dict.

The pipeline is the process's cached one (`get_pipeline()`): a long-lived worker (`ragload worker`, a
SimpleWorker) loads the index and opens its HTTP pools once, not per job. Errors are not caught here: a
RagError fails the attempt, and the worker's retry policy (system/retry_policy.py) decides what follows.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from system.logs import log_answered
from system.metrics import record_job_finished
from system.rag.pipeline import get_pipeline

log = logging.getLogger(__name__)


def process_query(query: str, top_k: int = 4) -> dict[str, Any]:
    result = get_pipeline().run(query, top_k)
    log_answered(log, result)
    _record_metrics()
    return result.model_dump()


def _record_metrics() -> None:
    """Queue wait, run time and end-to-end time of this job (when it runs under RQ)."""
    job = get_current_job()
    if job is None or job.enqueued_at is None or job.started_at is None:
        return
    ended = datetime.now(UTC)
    record_job_finished(
        queue_wait_s=(job.started_at - job.enqueued_at).total_seconds(),
        run_s=(ended - job.started_at).total_seconds(),
        end_to_end_s=(ended - (job.created_at or job.enqueued_at)).total_seconds(),
    )
