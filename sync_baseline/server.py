"""`ragload baseline`: serve the synchronous baseline with uvicorn, in N processes.

The flags are written into the BASELINE_* environment variables (sync_baseline/settings.py) before uvicorn
starts, because with `--processes` > 1 uvicorn spawns fresh interpreters that build the app from the
environment. A flag left out keeps whatever the environment already says.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG

from sync_baseline.settings import BaselineSettings, Mode

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
KEEP_ALIVE_S = 75  # uvicorn closes idle connections after 5 s by default; a client reusing one just then sees
# "connection closed" (seen in open-loop cells), so idle keep-alives outlast any gap between requests
FLAG_TO_ENV = {
    "mode": "BASELINE_MODE",
    "processes": "BASELINE_PROCESSES",
    "threads": "BASELINE_THREADS",
    "request_timeout_s": "BASELINE_REQUEST_TIMEOUT_S",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=[mode.value for mode in Mode], help="how /chat is served (threadpool)"
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--processes", type=int, help="uvicorn worker processes (1)")
    parser.add_argument("--threads", type=int, help="thread pool size per process (40, AnyIO's default)")
    parser.add_argument(
        "--request-timeout-s", type=float, help="answer 504 when /chat takes longer than this (30)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (costs CPU under load)")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the baseline's own loggers (its startup line states the concurrency)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["sync_baseline"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


@contextmanager
def metrics_dir(processes: int) -> Iterator[None]:
    """A PROMETHEUS_MULTIPROC_DIR for uvicorn's processes to share (sync_baseline/metrics.py).

    One given in the environment (the stack gives the baseline its own, emptied) is used as it is (created if
    missing, by system/rag/prometheus.py); with several processes and none given, a temporary one lives as
    long as the server. One process needs none: it counts in memory.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or processes == 1:
        yield
        return
    made = tempfile.mkdtemp(prefix="ragload-baseline-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made  # read by the processes uvicorn spawns, at import
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(made, ignore_errors=True)


def main(args: argparse.Namespace) -> int:
    for flag, variable in FLAG_TO_ENV.items():
        value = getattr(args, flag)
        if value is not None:
            os.environ[variable] = str(value)
    try:
        settings = BaselineSettings()
    except ValidationError as exc:
        logging.getLogger(__name__).error("invalid baseline settings: %s", exc)
        return 2
    with metrics_dir(settings.processes):
        uvicorn.run(
            "sync_baseline.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=settings.processes,
            log_config=log_config(args.log_level),
            log_level=args.log_level,
            access_log=args.access_log,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
    return 0
