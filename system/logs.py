"""Structured (JSON) logs that carry the job id, so one request can be followed across API and workers.

- `configure_logging(service)` once per process: one JSON line per record on stderr, with `service`, `pid`
  and `job_id` fields. It replaces the handlers of the root logger and makes uvicorn's and RQ's loggers
  propagate to it (RQ installs its own coloured handler only when no handler is found up the hierarchy).
- The job id comes from a context variable (`bind_job_id`, `job_context`); inside an RQ job it falls back
  to `rq.get_current_job()`, so the job function needs no change for its log lines to carry the id.
- `JobIdMiddleware` (pure ASGI) gives every HTTP request its own job-id scope: it binds `?job_id=` of the
  request when there is one, lets the endpoint bind the id it creates (`bind_job_id(job.id)`), and answers
  with an `X-Job-ID` header whenever the request carried or created one.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs

from pythonjsonlogger.json import JsonFormatter
from rq import get_current_job
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from system.rag.schemas import RagResult

JOB_ID_HEADER = "X-Job-ID"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # new_job_id()
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # RQ colours ids when it writes to a terminal
# RQ ids are uuid4 hex; a caller-supplied id must not smuggle anything into a header or a log line.
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
# Loggers that configure handlers of their own; ours must see their records.
_FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "rq.worker", "rq")


@dataclass
class _RequestJob:
    """Mutable per-request holder: an endpoint running in a copied context (threadpool) can still set it."""

    job_id: str | None = None


_job_id: ContextVar[str | None] = ContextVar("ragload_job_id", default=None)
_request_job: ContextVar[_RequestJob | None] = ContextVar("ragload_request_job", default=None)


def current_job_id() -> str | None:
    """The job id of the code running now: bound explicitly, else the RQ job being performed, else None."""
    job_id = _job_id.get()
    if job_id is not None:
        return job_id
    job = get_current_job()
    return job.id if job is not None else None


def bind_job_id(job_id: str) -> None:
    """Tag the rest of this request (or task) with `job_id`; the middleware echoes it in `X-Job-ID`."""
    _job_id.set(job_id)
    holder = _request_job.get()
    if holder is not None:
        holder.job_id = job_id


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag the log lines of a block with `job_id`, and restore the previous id afterwards."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class JobIdFilter(logging.Filter):
    """Adds `job_id` to every record (an explicit `extra={"job_id": …}` wins).

    RQ's own lines about a job ("dequeued …", "Job OK …", "Result is kept …") are logged outside the job's
    run, so no context holds the id; they pass it as a format argument, which is taken instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = current_job_id() or _job_id_argument(record)
        return True


def _job_id_argument(record: logging.LogRecord) -> str | None:
    if not record.name.startswith("rq") or not isinstance(record.args, tuple):
        return None
    for arg in record.args:
        if isinstance(arg, str) and _UUID.fullmatch(plain := _ANSI_COLOUR.sub("", arg)):
            return plain
    return None


def json_formatter(service: str) -> logging.Formatter:
    return JsonFormatter(
        _LOG_FORMAT,
        rename_fields=_RENAMED,
        static_fields={"service": service},
        exc_info_as_array=False,
    )


def configure_logging(service: str, level: int | str = "INFO", stream: IO[str] | None = None) -> None:
    """Make the root logger write JSON lines for `service`; safe to call again (it replaces its handler)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter(service))
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True


def uvicorn_log_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """`uvicorn.run(..., log_config=uvicorn_log_config("api"))`: the same JSON lines, set up by uvicorn in
    each of its worker processes (uvicorn's default config would otherwise replace ours)."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["job_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job_id": {"()": JobIdFilter}},
        "formatters": {"json": {"()": json_formatter, "service": service}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "propagate": True} for name in _FOREIGN_LOGGERS},
    }


def safe_job_id(value: str | None) -> str | None:
    """`value` if it looks like a job id, else None (never echo arbitrary input into a header)."""
    return value if value is not None and _SAFE_JOB_ID.match(value) else None


class JobIdMiddleware:
    """ASGI middleware: a job-id scope per HTTP request and an `X-Job-ID` response header when there is one.

    `app.add_middleware(JobIdMiddleware)` on the FastAPI app; endpoints call `bind_job_id(job.id)`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder = _RequestJob(job_id=_job_id_from_query(scope))
        holder_token = _request_job.set(holder)
        id_token = _job_id.set(holder.job_id)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start" and holder.job_id is not None:
                headers: list[Any] = list(message.get("headers", []))
                if not any(name.lower() == JOB_ID_HEADER.lower().encode() for name, _ in headers):
                    headers.append((JOB_ID_HEADER.encode(), holder.job_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            _job_id.reset(id_token)
            _request_job.reset(holder_token)


def _job_id_from_query(scope: Scope) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("job_id")
    return safe_job_id(values[0]) if values else None


def log_answered(logger: logging.Logger, result: RagResult) -> None:
    """The job's last line (both engines): the pipeline's stage times and the sources it found."""
    timings = result.timings_ms
    logger.info(
        "answered: embed %.1f ms, retrieve %.1f ms, llm %.1f ms, %d sources",
        timings.embed,
        timings.retrieve,
        timings.llm,
        len(result.sources),
    )
