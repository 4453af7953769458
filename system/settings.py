"""Settings of the queued system (API and workers), read from the environment (no prefix).

The RAG core reads its own (system/rag/settings.py); the breaker too (system/rag/breaker.py, BREAKER_*).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from system.retry_policy import JOB_MAX_RETRIES

# The HTTP contract caps the long-poll at 30 s (docs/architecture.md, "HTTP contracts"): the default client
# deadline of the load tests is 30 s as well.
LONG_POLL_LIMIT_S = 30.0


class SystemSettings(BaseSettings):
    """REDIS_URL is required (`ragload up` supplies one); everything else has a default."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    redis_url: str = Field(min_length=1)
    # Which queue engine carries the jobs (system/engines/): RQ, one job at a time per worker process, or
    # SAQ, asyncio workers with many jobs in flight per process. The API and its workers must agree.
    queue_engine: Literal["rq", "saq"] = "rq"
    # Jobs one SAQ worker process runs at once (`ragload worker --engine saq --concurrency C`).
    worker_concurrency: int = Field(default=64, ge=1, le=1024)
    queue_name: str = Field(default="ragload", pattern=r"^[A-Za-z0-9_.:-]+$")
    # A job waits for 2 LLM calls of up to LLM_TIMEOUT_S (30 s) each; past 2 minutes nobody waits for it.
    job_timeout_s: int = Field(default=120, ge=1)
    # Kept long enough for a client to fetch it, short enough that 200 jobs/s (≈ 3 KB each) stay < 200 MB.
    result_ttl_s: int = Field(default=300, ge=1)
    # A failed job stays a day in the dead-letter queue (`ragload dlq`) for someone to look at.
    failure_ttl_s: int = Field(default=86_400, ge=1)
    # Job retries on transient errors (system/retry_policy.py); 0 fails a job at its first error.
    job_max_retries: int = Field(default=JOB_MAX_RETRIES, ge=0)
    # Admission control: past this many waiting jobs POST /chat answers 429 instead of growing the queue.
    max_queue_depth: int = Field(default=1000, ge=1)
    queue_full_retry_after_s: float = Field(default=1.0, gt=0)
    long_poll_max_s: float = Field(default=LONG_POLL_LIMIT_S, gt=0, le=LONG_POLL_LIMIT_S)
    # Each long-poll holds one Valkey connection (no thread); past this many per API process a request
    # with `wait` is answered at once with the current status (the client just asks again).
    long_poll_max_waiters: int = Field(default=1000, ge=0)
    # redis-py has no timeouts by default: without them a dead broker hangs requests instead of a 503.
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    broker_retry_after_s: float = Field(default=2.0, gt=0)
    # What a 202 from POST /chat survives (system/broker.py, "Durability"): `fsync` answers 202 only once the
    # job is in the broker's append-only file on disk, so a broker crash (SIGKILL, OOM, power loss) loses no
    # accepted job, and answers 503 when the broker cannot confirm that (no AOF); `none` answers as soon as
    # the broker holds the job in memory (with `appendfsync everysec` a machine crash or power loss may lose
    # the last second of accepted jobs; a broker without AOF loses all of them when it stops).
    broker_durability: Literal["fsync", "none"] = "fsync"
    broker_fsync_timeout_ms: int = Field(default=1000, ge=1)  # past it: 503 (the broker's disk is stalled)
    # `ragload worker` serves its own /metrics on this port when set: workers in their own containers or pods
    # share no files with the API, whose /metrics merges only the processes of its own machine.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Read by prometheus-client itself when it is imported (multiprocess mode: each process writes its series
    # there); named here because WORKER_METRICS_PORT needs it, and so that the worker can say so.
    prometheus_multiproc_dir: str | None = None


def load_settings() -> SystemSettings:
    """The settings from the environment; pydantic's ValidationError names what is missing or wrong."""
    return SystemSettings()  # type: ignore[call-arg]  # REDIS_URL is read from the environment
