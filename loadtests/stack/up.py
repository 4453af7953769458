"""`ragload up`: the whole embedded stack in the foreground; Ctrl-C (or SIGTERM) stops every part.

It starts an `EmbeddedStack` (loadtests/stack/embedded_stack.py), prints its URLs and example requests, and
watches the children: a worker that dies is replaced (a crash loop stops the stack), any other part that dies
stops the stack, naming it and its log. `--autoscale MIN:MAX` adds `StackAutoscaling`
(loadtests/stack/autoscaling.py). A closed terminal (SIGHUP) stops it as SIGTERM does; if it is killed
outright, the tether's watchdog stops the parts (loadtests/stack/tether.py). The banner says how many jobs
were waiting from an earlier run; `--fresh` discards them (loadtests/stack/backlog.py).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from loadtests.stack.autoscaling import StackAutoscaling, policy_for
from loadtests.stack.embedded_stack import BASELINE_MODES, EmbeddedStack, StackError, settings_from
from sync_baseline.settings import DEFAULT_THREADS
from system.autoscale import parse_bounds
from system.settings import SystemSettings

WATCH_INTERVAL_S = 0.5
MAX_WORKER_RESPAWNS = 5  # per RESPAWN_WINDOW_S: more means a crash loop, and restarting again will not help
RESPAWN_WINDOW_S = 60.0
FRESH_HINT = "`ragload up --fresh` starts with an empty queue"
EXAMPLE_QUERY = "How do I serialize an object to a JSON formatted string?"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: its terminal was closed


class ShutdownRequested(Exception):
    """SIGINT or SIGTERM arrived."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-port", type=int, default=8000, help="queued API (%(default)s)")
    parser.add_argument(
        "--mock-port", type=int, default=8100, help="mock LLM (%(default)s; unused with OPENAI_BASE_URL)"
    )
    parser.add_argument("--baseline-port", type=int, default=8001, help="inline baseline (%(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2; see --autoscale)")
    parser.add_argument(
        "--engine", choices=["rq", "saq"], default="rq", help="queue engine: rq, or saq (asyncio workers)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="saq: jobs in flight per worker process (%(default)s)"
    )
    parser.add_argument(
        "--autoscale",
        type=_bounds,
        metavar="MIN:MAX",
        help="start MIN workers and scale between MIN and MAX on queue length (wins over --workers)",
    )
    parser.add_argument("--baseline-mode", choices=BASELINE_MODES, default="threadpool", help="(%(default)s)")
    parser.add_argument("--baseline-processes", type=int, default=1, help="uvicorn processes (%(default)s)")
    parser.add_argument(
        "--baseline-threads",
        type=int,
        help=f"thread pool size per baseline process (threadpool mode; default {DEFAULT_THREADS})",
    )
    parser.add_argument("--no-baseline", action="store_true", help="do not start the synchronous baseline")
    parser.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="PATH",
        help="if the index is missing, index these .md/.txt files or folders (default: stdlib docstrings)",
    )
    parser.add_argument("--log-dir", type=Path, help="folder for each part's log (default: a temp folder)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start with an empty queue: delete the jobs waiting from an earlier run (queued, scheduled for "
        "a retry, interrupted); the dead-letter queue stays",
    )


def _bounds(text: str) -> tuple[int, int]:
    try:
        return parse_bounds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="ragload up: %(message)s")
    # StackAutoscaling prints its own line per change (with the load); the loop's log line would repeat it.
    logging.getLogger("system.autoscale").setLevel(logging.WARNING)
    if args.engine == "saq" and args.autoscale:
        # system/autoscale.py counts one job per worker process (RQ): not right for C jobs per SAQ process
        print("ragload up: --autoscale is for the rq engine only (for now)", flush=True)
        return 2
    stack = EmbeddedStack(
        engine=args.engine,
        worker_concurrency=args.concurrency,
        api_port=args.api_port,
        mock_port=args.mock_port,
        baseline_port=args.baseline_port,
        workers=args.autoscale[0] if args.autoscale else args.workers,
        baseline_mode=args.baseline_mode,
        baseline_processes=args.baseline_processes,
        baseline_threads=args.baseline_threads,
        with_baseline=not args.no_baseline,
        log_dir=args.log_dir,
        ingest_args=args.corpus,
        fresh=args.fresh,
    )
    _raise_on_signals()
    code = 0
    autoscaling: StackAutoscaling | None = None
    try:
        stack.start()
        if args.autoscale:
            autoscaling = StackAutoscaling(stack, policy_for(*args.autoscale)).start()
        print(banner(stack, args.autoscale), flush=True)
        code = supervise(stack)
    except ShutdownRequested:
        say("ragload up: stopping every part…")
    except StackError as exc:
        print(f"ragload up: {exc}", flush=True)
        code = 1
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        if autoscaling is not None:
            autoscaling.stop()  # before the stack: it must not scale what is being stopped
        stack.stop()
    say(f"ragload up: stopped (logs in {stack.log_dir})")
    return code


def say(text: str) -> None:
    """Print a line of the stop; after SIGHUP its terminal is gone (EIO), which must not fail the stop."""
    try:
        print(text, flush=True)
    except OSError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - what is left unwritten would fail at exit too


def _raise_on_signals() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise ShutdownRequested(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


def supervise(stack: EmbeddedStack) -> int:
    """Watch the children until a signal: a dead worker is replaced; any other dead part stops the stack."""
    respawns: collections.deque[float] = collections.deque()
    while True:
        time.sleep(WATCH_INTERVAL_S)
        for part in stack.exited():
            code = part.proc.returncode if part.proc else None
            print(
                f"ragload up: {part.name} exited unexpectedly (code {code}); stopping the stack. "
                f"Its log: {stack.log_path(part.name)}",
                flush=True,
            )
            return 1
        now = time.monotonic()
        for worker in stack.respawn_dead_workers():
            code = worker.proc.returncode if worker.proc else None
            print(f"ragload up: {worker.name} exited (code {code}); started a new worker", flush=True)
            respawns.append(now)
        while respawns and now - respawns[0] > RESPAWN_WINDOW_S:
            respawns.popleft()
        if len(respawns) > MAX_WORKER_RESPAWNS:
            print(
                f"ragload up: workers keep dying ({len(respawns)} in {RESPAWN_WINDOW_S:.0f} s); "
                f"stopping the stack. Worker logs are in {stack.log_dir}",
                flush=True,
            )
            return 1


def banner(stack: EmbeddedStack, autoscale: tuple[int, int] | None = None) -> str:
    urls = stack.urls
    api = urls["api"]
    workers = f"autoscaled {autoscale[0]}..{autoscale[1]}" if autoscale else str(stack.worker_count)
    if stack.engine == "saq":
        workers += f" saq, {stack.worker_concurrency} jobs each"
    lines = [
        "",
        "ragload stack is up (Ctrl-C stops every part)",
        f"  queued API    {api}  (workers: {workers}; OpenAPI docs at {api}/docs)",
    ]
    if "baseline" in urls:
        shape = f"{stack.baseline_mode}, {stack.baseline_processes} process(es)"
        lines.append(f"  baseline      {urls['baseline']}  ({shape})")
    lines += [
        f"  LLM (OpenAI)  {urls['openai']}" + ("  (mock: GET/PUT /_mock/config)" if stack.mock else ""),
        f"  Valkey        {urls['redis']}",
        *backlog_lines(stack),
        f"  logs          {stack.log_dir}",
        "",
        "Ask the queued API (submit, then long-poll the result):",
        _curl_queued(api),
    ]
    if "baseline" in urls:
        lines += ["Ask the baseline (answers inline):", _curl_baseline(urls["baseline"])]
    return "\n".join(lines) + "\n"


def backlog_lines(stack: EmbeddedStack) -> list[str]:
    """What the broker held from before, and what was done about it (nothing said if nothing was there)."""
    backlog = stack.backlog
    if backlog is None or not (backlog.total or stack.fresh):
        return []
    if stack.fresh:
        found = f"deleted {backlog}" if backlog.total else "nothing was waiting"
        return [f"  from before   started empty (--fresh): {found}"]
    lines = [
        f"  from before   {backlog} waiting: they run before new jobs ({FRESH_HINT})",
    ]
    max_depth = settings_from(stack.env, SystemSettings).max_queue_depth
    if backlog.queued >= max_depth:
        lines.append(
            f"                {backlog.queued:,} queued is at least MAX_QUEUE_DEPTH ({max_depth:,}): "
            "every new submit gets 429 until the queue drains below it"
        )
    return lines


def _body() -> str:
    return '{"query": "' + EXAMPLE_QUERY + '"}'


def _curl_queued(api: str) -> str:
    submit = f"curl -s -X POST {api}/chat -H 'Content-Type: application/json' -d '{_body()}'"
    job_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"job_id\"])'"
    return f'  JOB=$({submit} | {job_id}) && curl -s "{api}/job-status?job_id=$JOB&wait=10"'


def _curl_baseline(baseline: str) -> str:
    return f"  curl -s -X POST {baseline}/chat -H 'Content-Type: application/json' -d '{_body()}'"
