"""`ragload dlq list|show ID|requeue [ID…|--all]|purge [--engine rq|saq]`: the dead-letter queue.

RQ (below): RQ's FailedJobRegistry. SAQ: system/engines/saq/dlq.py, the same actions over SAQ's keys.

A job lands there when it failed permanently or ran out of retries (system/retry_policy.py), or when its
worker died under it and it had no retry left (RQ's abandoned-job cleanup, `AbandonedJobError`). Each entry
keeps its error (RQ's failure result) and its attempt count (`job.meta`, kept by `on_job_failure`).

A requeued job runs once more with the retries it had left (usually none): requeuing is the operator's
deliberate retry, after fixing the cause. `purge` deletes the jobs and their results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.results import Result

from system.retry_policy import ERROR_META_KEY, failed_attempts

DEFAULT_QUEUE = "ragload"
LIST_ERROR_WIDTH = 80  # one line per job in `list`; `show` prints the whole traceback


@dataclass(frozen=True)
class DeadJob:
    job_id: str
    func: str
    args: list[str]
    enqueued_at: str | None
    ended_at: str | None
    attempts: int | None
    error: str  # the last line of the traceback (or RQ's reason, e.g. the AbandonedJobError note)
    traceback: str


def dead_letter_registry(connection: Redis, queue_name: str = DEFAULT_QUEUE) -> FailedJobRegistry:
    return Queue(queue_name, connection=connection).failed_job_registry


def describe(job: Job) -> DeadJob:
    result = job.latest_result()
    trace = ""
    if result is not None and result.type in (Result.Type.FAILED, Result.Type.RETRIED):
        trace = result.exc_string or ""
    summary = _last_line(trace) or str(job.meta.get(ERROR_META_KEY, "")) or "unknown error"
    return DeadJob(
        job_id=job.id,
        func=job.func_name or "?",
        args=[repr(arg)[:200] for arg in job.args],
        enqueued_at=_iso(job.enqueued_at),
        ended_at=_iso(job.ended_at),
        attempts=failed_attempts(job),
        error=summary,
        traceback=trace,
    )


def dead_jobs(registry: FailedJobRegistry) -> Iterator[DeadJob]:
    for job_id in registry.get_job_ids():
        try:
            yield describe(Job.fetch(job_id, connection=registry.connection))
        except NoSuchJobError:
            continue  # expired between the listing and the fetch


def requeue(registry: FailedJobRegistry, job_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Put jobs back on their queue; returns (requeued, not found in the dead-letter queue)."""
    done: list[str] = []
    missing: list[str] = []
    for job_id in job_ids:
        try:
            registry.requeue(job_id)
        except (NoSuchJobError, InvalidJobOperation):
            missing.append(job_id)
        else:
            done.append(job_id)
    return done, missing


def purge(registry: FailedJobRegistry) -> int:
    """Delete every dead job (and its results); returns how many."""
    count = 0
    for job_id in registry.get_job_ids():
        try:
            registry.remove(job_id, delete_job=True)
        except NoSuchJobError:
            registry.remove(job_id)
        count += 1
    return count


class DeadLetters(Protocol):
    """What the command needs of an engine's dead-letter queue; jobs as DeadJob's fields (a dict)."""

    def ids(self) -> list[str]: ...
    def __contains__(self, job_id: object) -> bool: ...
    def describe(self, job_id: str) -> dict[str, Any] | None: ...
    def jobs(self) -> Iterator[dict[str, Any]]: ...
    def requeue(self, job_ids: Sequence[str]) -> tuple[list[str], list[str]]: ...
    def purge(self) -> int: ...


class RqDeadLetters:
    def __init__(self, registry: FailedJobRegistry) -> None:
        self.registry = registry

    def ids(self) -> list[str]:
        return list(self.registry.get_job_ids())

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.registry

    def describe(self, job_id: str) -> dict[str, Any] | None:
        try:
            return asdict(describe(Job.fetch(job_id, connection=self.registry.connection)))
        except NoSuchJobError:
            return None

    def jobs(self) -> Iterator[dict[str, Any]]:
        return (asdict(job) for job in dead_jobs(self.registry))

    def requeue(self, job_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        return requeue(self.registry, job_ids)

    def purge(self) -> int:
        return purge(self.registry)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


# ---- command ---------------------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, with_defaults: bool) -> None:
    """The options every action takes, accepted before or after the action (`dlq --redis-url U list` and
    `dlq list --redis-url U`); on the actions they default to SUPPRESS so as not to undo the first form."""

    def default(value: object) -> object:
        return value if with_defaults else argparse.SUPPRESS

    redis_url = os.environ.get("REDIS_URL")
    parser.add_argument("--redis-url", default=default(redis_url), help="default: $REDIS_URL")
    queue = os.environ.get("QUEUE_NAME", DEFAULT_QUEUE)
    parser.add_argument("--queue", default=default(queue), help="default: $QUEUE_NAME, else ragload")
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON instead of text"
    )
    engine = os.environ.get("QUEUE_ENGINE", "rq")
    parser.add_argument(
        "--engine", choices=["rq", "saq"], default=default(engine), help="default: $QUEUE_ENGINE, else rq"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _connection_options(parser, with_defaults=True)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions = {
        "list": "one line per dead job: id, attempts, ended, error",
        "show": "one dead job in full, with its traceback",
        "requeue": "put dead jobs back on the queue",
        "purge": "delete every dead job and its results",
    }
    parsers = {name: sub.add_parser(name, help=text) for name, text in actions.items()}
    for action in parsers.values():
        _connection_options(action, with_defaults=False)
    parsers["show"].add_argument("job_id")
    parsers["requeue"].add_argument("job_ids", nargs="*", metavar="ID")
    parsers["requeue"].add_argument("--all", action="store_true", help="every job in the dead-letter queue")


def main(args: argparse.Namespace) -> int:
    if not args.redis_url:
        print("ragload dlq: set REDIS_URL or pass --redis-url", file=sys.stderr)
        return 2
    connection = Redis.from_url(args.redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        return _run(args, dead_letters(connection, args.engine, args.queue, args.redis_url))
    except RedisError as exc:
        print(f"ragload dlq: cannot reach {args.redis_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()


def dead_letters(connection: Redis, engine: str, queue_name: str, redis_url: str) -> DeadLetters:
    if engine == "saq":
        from system.engines.saq.dlq import SaqDeadLetters  # an RQ deployment never loads SAQ

        return SaqDeadLetters(connection, queue_name, redis_url)
    return RqDeadLetters(dead_letter_registry(connection, queue_name))


def _run(args: argparse.Namespace, dead: DeadLetters) -> int:
    if args.action == "list":
        jobs = list(dead.jobs())
        if args.json:
            print(json.dumps([_brief(job) for job in jobs], indent=2))
        else:
            _print_table(jobs)
        return 0
    if args.action == "show":
        job = dead.describe(args.job_id)
        if job is None:
            print(f"ragload dlq: no job {args.job_id}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(job, indent=2))
        else:
            _print_job(job, in_dlq=args.job_id in dead)
        return 0
    if args.action == "requeue":
        if bool(args.all) == bool(args.job_ids):
            print("ragload dlq requeue: give job ids or --all (not both)", file=sys.stderr)
            return 2
        ids = dead.ids() if args.all else args.job_ids
        done, missing = dead.requeue(ids)
        print(f"requeued {len(done)} job(s)" + "".join(f"\n  {job_id}" for job_id in done))
        for job_id in missing:
            print(f"not in the dead-letter queue: {job_id}", file=sys.stderr)
        return 1 if missing else 0
    print(f"purged {dead.purge()} job(s)")
    return 0


def _brief(job: dict[str, Any]) -> dict[str, object]:
    return {key: value for key, value in job.items() if key != "traceback"}


def _print_table(jobs: Sequence[dict[str, Any]]) -> None:
    print(f"{len(jobs)} job(s) in the dead-letter queue")
    for job in jobs:
        attempts = "?" if job["attempts"] is None else str(job["attempts"])
        ended = job["ended_at"] or "-"
        print(f"{job['job_id']}  attempts={attempts}  ended={ended}  {job['error'][:LIST_ERROR_WIDTH]}")


def _print_job(job: dict[str, Any], in_dlq: bool) -> None:
    print(f"job       {job['job_id']}{'' if in_dlq else '  (not in the dead-letter queue)'}")
    print(f"function  {job['func']}({', '.join(job['args'])})")
    print(f"enqueued  {job['enqueued_at'] or '-'}")
    print(f"ended     {job['ended_at'] or '-'}")
    print(f"attempts  {'?' if job['attempts'] is None else job['attempts']}")
    print(f"error     {job['error']}")
    if job["traceback"]:
        print("\n" + job["traceback"].rstrip())
