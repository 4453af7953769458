"""`ragload mock`: serve the mock OpenAI API (mocks/app.py) with uvicorn, httptools and uvloop, one process.

Each flag is a key of the live config (mocks/config.py), so `--chat-latency X` at start and
`PUT /_mock/config {"chat_latency": "X"}` later do the same thing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import uvicorn

from mocks.app import MockApp, QuietDroppedStreams
from mocks.config import DEFAULT_CHAT_LATENCY, DEFAULT_EMBED_LATENCY, ConfigError, MockConfig
from mocks.latency import LatencySpec, latency_spec

DEFAULT_HOST = "127.0.0.1"  # loopback only, unless asked: the mock has no authentication
DEFAULT_PORT = 8100
BACKLOG = 4096  # a benchmark opens 1,000+ connections at once; the default 2048 is close to that
GRACEFUL_SHUTDOWN_S = 2.0  # hung calls (hang faults) must not hold up a stop

DESCRIPTION = f"""\
Serve an OpenAI-compatible API (/v1/chat/completions, /v1/embeddings, /v1/models) whose latency and faults
are known exactly. Live control: GET/PUT /_mock/config (keys = these flags with underscores),
GET /_mock/stats, DELETE /_mock/stats (zero the counters).

Latency specs: const:200ms | uniform:100ms,300ms | normal:MEAN,STD | lognormal:MEDIAN,SIGMA | exp:MEAN.
Defaults: chat {DEFAULT_CHAT_LATENCY} (median 400 ms, 99th percentile about 1.3 s), embeddings
{DEFAULT_EMBED_LATENCY}, no faults, no limits; models "mock-chat" and "mock-embed"."""


def _flag_type(default: Any) -> Any:
    if isinstance(default, LatencySpec) or default is None:
        return latency_spec
    return type(default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")
    for name, field in MockConfig.model_fields.items():
        default = field.default
        shown = "same as --chat-latency" if default is None else str(default)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_flag_type(default),
            default=argparse.SUPPRESS,
            metavar="SPEC" if _flag_type(default) is latency_spec else name.split("_")[-1].upper(),
            help=f"{field.description} (default: {shown})",
        )


def build_config(args: argparse.Namespace) -> MockConfig:
    given = {name: getattr(args, name) for name in MockConfig.model_fields if hasattr(args, name)}
    return MockConfig().updated(given)


def main(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"ragload mock: {exc}", file=sys.stderr)
        return 2
    server_config = uvicorn.Config(
        MockApp(config),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level=args.log_level,
        backlog=BACKLOG,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
    )
    logging.getLogger("uvicorn.error").addFilter(QuietDroppedStreams())
    settings = ", ".join(f"{key}={value}" for key, value in config.model_dump(mode="json").items())
    print(f"ragload mock on http://{args.host}:{args.port}/v1 ({settings})", flush=True)
    uvicorn.Server(server_config).run()
    return 0
