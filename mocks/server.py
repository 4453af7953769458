"""`ragload mock`: serve the mock OpenAI API (mocks/app.py) with uvicorn, httptools and uvloop, one process.

Each flag is a key of the live config (mocks/config.py), so `--chat-latency X` at start and
`PUT /_mock/config {"chat_latency": "X"}` later do the same thing. `--upstream NAME|FILE` starts from an
upstream profile (mocks/upstream.py); flags given beside it win.
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
from mocks.upstream import load_upstream, presets

DEFAULT_HOST = "127.0.0.1"  # loopback only, unless asked: the mock has no authentication
DEFAULT_PORT = 8100
BACKLOG = 4096  # a benchmark opens 1,000+ connections at once; the default 2048 is close to that
GRACEFUL_SHUTDOWN_S = 2.0  # hung calls (hang faults) must not hold up a stop

DESCRIPTION = f"""\
Serve an OpenAI-compatible API (/v1/chat/completions, /v1/embeddings, /v1/models) whose latency, capacity
and faults are known exactly. Live control: GET/PUT /_mock/config (keys = these flags with underscores;
PUT {{"upstream": NAME|FILE}} loads a profile), GET /_mock/stats (calls in flight, running and waiting in the
engine, tokens per second), DELETE /_mock/stats (zero the counters and the call log, and start the per-request
draw counts again), GET /_mock/calls (per call since then: request key, draw, scheduled and actual time).

Latency specs: const:200ms | uniform:100ms,300ms | normal:MEAN,STD | lognormal:MEDIAN,SIGMA | exp:MEAN.
Defaults: chat {DEFAULT_CHAT_LATENCY} (median 400 ms, 99th percentile about 1.3 s), embeddings
{DEFAULT_EMBED_LATENCY}, no faults, no limits; any model name (listed: "mock-chat", "mock-embed").

Capacity (chat): --capacity unbounded (default) gives every call its own latency draw, any number at once.
--capacity batch is a finite server, a continuous-batching engine like vLLM's: at most --max-batch calls
decode together; each step gives every running call one token (its answer's words are its output tokens)
and lasts (step_base + step_per_seq x running + prefill_per_token x prompt tokens admitted in the step)
x (1 + thrash x waiting / max_batch). Calls join at step boundaries, so time to first token and time per
token grow with the calls in flight, throughput saturates, and with --thrash > 0 it falls once calls queue.
Streams follow the engine's steps. --chat-latency is then the time before a call reaches the engine
(network, gateway). Embeddings always keep their per-call --embed-latency. Presets (--upstream):
{", ".join(presets())}; `ragload probe-upstream` fits a profile to a real server.

Draws: each call's latency and fault draw comes from --seed and a hash of its messages (chat) or inputs
(embeddings), the k-th call with the same content getting the k-th draw since the last reset, so the same
requests get the same draws whatever their order. Limits: --rpm/--tpm answer x-ratelimit-* headers on
every call and 429 with Retry-After when a budget is empty. Time: every latency, token and engine step is a
deadline from the call's (or engine's) start, so timer overshoots do not add up."""


METAVARS = {"capacity": "{unbounded,batch}", "models": "NAMES", "max_batch": "N", "thrash": "FRACTION"}


def _flag_type(name: str, default: Any) -> Any:
    if isinstance(default, LatencySpec) or default is None:
        return latency_spec
    if isinstance(MockConfig().model_dump(mode="json")[name], int | float):
        return type(default)
    return str  # durations, names, lists: validated (with a clear message) by MockConfig


def _metavar(name: str, flag_type: Any) -> str:
    if flag_type is latency_spec:
        return "SPEC"
    if flag_type is str and name not in METAVARS:
        return "DURATION"
    return METAVARS.get(name, name.split("_")[-1].upper())


def _shown(name: str, default: Any) -> str:
    if default is None:
        return "same as --chat-latency"
    value = MockConfig().model_dump(mode="json")[name]
    return ",".join(value) or "any" if isinstance(value, list) else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")
    parser.add_argument(
        "--upstream",
        metavar="NAME|FILE",
        help=f"start from an upstream profile: a preset ({', '.join(presets())}) or a TOML file "
        "written by `ragload probe-upstream`; flags given beside it win",
    )
    for name, field in MockConfig.model_fields.items():
        default = field.default
        shown = _shown(name, default)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_flag_type(name, default),
            default=argparse.SUPPRESS,
            metavar=_metavar(name, _flag_type(name, default)),
            help=f"{field.description} (default: {shown})",
        )


def build_config(args: argparse.Namespace) -> MockConfig:
    base = load_upstream(args.upstream) if getattr(args, "upstream", None) else {}
    given = {name: getattr(args, name) for name in MockConfig.model_fields if hasattr(args, name)}
    return MockConfig().updated({**base, **given})


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
