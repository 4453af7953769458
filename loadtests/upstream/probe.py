"""`ragload probe-upstream`: measure an OpenAI-compatible chat endpoint and fit the mock to it.

A short ladder of concurrency (e.g. 1, 2, 4, 8 calls at once), a few streamed calls per client at each step,
so that time to first token and the time between tokens show how the server slows as calls pile up. Prompts
of two sizes alternate (prefill per token is the difference); `ignore_eos` asks for exactly `--max-tokens`
output tokens where the server honours it (vLLM does; others answer 400 and the probe goes on without it).
Every 429 is recorded with its x-ratelimit-* headers, and the client then waits its Retry-After. The fitted
capacity model (fit.py) is written as an upstream profile: `ragload mock --upstream FILE` then behaves like
the probed server, offline, and a bench profile can name the file in its [mock] table.

It never runs unbounded: --max-requests and --max-seconds are required, and the ladder is cut to fit them.
The API key comes from --api-key or $OPENAI_API_KEY; it is sent to --base-url only and written nowhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import tomli_w
from openai import AsyncOpenAI

from loadtests.upstream.fit import Fit, Observation, fit, level_table
from mocks.latency import format_duration

DEFAULT_LADDER = "1,2,4,8"
WARM_UP_CALLS = 2  # at most: the first, and a second without ignore_eos if the server refused it
ROUND_TRIPS = 5
NOISY_FIT = 0.12  # rms relative error above which a fit is flagged (good probes of the mock fit to 3-9 %)
DEFAULT_PROMPT_WORDS = "50,400"
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
)
WORDS = (
    "queue worker latency batch token stream upstream request answer context passage index vector cache "
    "server client deadline retry budget capacity throughput model prompt decode prefill schedule"
).split()


@dataclass
class CallTrace:
    """One probe call; times in seconds from the probe's start (None where it never got that far)."""

    concurrency: int
    sent: float
    status: int  # 200, the HTTP status of an error, or 0 for a connection error or timeout
    first_token: float | None = None
    last_token: float | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    rate_limit: dict[str, str] = field(default_factory=dict)
    error: str = ""

    def observation(self) -> Observation | None:
        if (
            self.status != 200
            or self.first_token is None
            or self.last_token is None
            or not self.output_tokens
        ):
            return None
        return Observation(
            self.concurrency,
            self.sent,
            self.first_token,
            self.last_token,
            self.prompt_tokens,
            self.output_tokens,
        )


@dataclass
class Plan:
    ladder: list[int]
    rounds: int
    max_tokens: int
    prompt_words: list[int]
    max_requests: int
    max_seconds: float

    @property
    def requests(self) -> int:
        return sum(self.ladder) * self.rounds


def plan_within(ladder: list[int], rounds: int, max_requests: int) -> list[int]:
    """The ladder's steps that fit the request cap, lowest first."""
    kept, total = [], 0
    for level in ladder:
        if total + level * rounds > max_requests:
            break
        kept.append(level)
        total += level * rounds
    return kept


def prompt(index: int, words: int) -> str:
    """A prompt of `words` words that differs from every other call's from its first word (no prefix-cache
    hits to make later calls look cheaper)."""
    body = " ".join(WORDS[(index * 7 + i) % len(WORDS)] for i in range(max(1, words - 3)))
    return f"Call {index}: {body}. Continue."


class Prober:
    def __init__(self, client: AsyncOpenAI, model: str, plan: Plan, ignore_eos: bool | None) -> None:
        self.client = client
        self.model = model
        self.plan = plan
        self.ignore_eos = ignore_eos  # None: try it once, keep it if the server accepts it
        self.traces: list[CallTrace] = []
        self.round_trip_s = 0.0
        self.started = time.perf_counter()
        self.deadline = self.started + plan.max_seconds
        self._index = 0

    def _now(self) -> float:
        return time.perf_counter() - self.started

    async def call(self, concurrency: int) -> CallTrace:
        index = self._index
        self._index += 1
        words = self.plan.prompt_words[index % len(self.plan.prompt_words)]
        extra: dict[str, Any] = {"ignore_eos": True} if self.ignore_eos is not False else {}
        trace = CallTrace(concurrency, self._now(), 0)
        self.traces.append(trace)
        try:
            raw = await self.client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt(index, words)}],
                max_tokens=self.plan.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=extra or None,
                timeout=max(1.0, self.deadline - time.perf_counter()),
            )
            trace.rate_limit = _rate_limit_headers(raw.headers)
            chunks = 0
            async for chunk in raw.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    now = self._now()
                    trace.first_token = trace.first_token if trace.first_token is not None else now
                    trace.last_token = now
                    chunks += 1
                if chunk.usage is not None:
                    trace.prompt_tokens = chunk.usage.prompt_tokens
                    trace.output_tokens = chunk.usage.completion_tokens
            trace.output_tokens = trace.output_tokens or chunks
            trace.prompt_tokens = trace.prompt_tokens or words
            trace.status = 200
            if self.ignore_eos is None:
                self.ignore_eos = True
        except openai.APIStatusError as exc:
            trace.status = exc.status_code
            trace.error = str(exc)[:300]
            trace.rate_limit = _rate_limit_headers(exc.response.headers)
            if exc.status_code == 400 and self.ignore_eos is None:
                self.ignore_eos = False  # the server does not take vLLM's extension: probe without it
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            trace.error = f"{type(exc).__name__}: {exc}"[:300]
        return trace

    async def client_loop(self, concurrency: int, budget: list[int]) -> None:
        for _ in range(self.plan.rounds):
            if budget[0] <= 0 or time.perf_counter() >= self.deadline:
                return
            budget[0] -= 1
            trace = await self.call(concurrency)
            if trace.status == 429:
                wait = _retry_after(trace.rate_limit)
                await asyncio.sleep(min(wait, max(0.0, self.deadline - time.perf_counter())))

    async def warm_up(self) -> None:
        """Outside the measurement: open the connection, learn whether ignore_eos is taken (a second call
        if the first was refused), and time a trivial request (GET /models) for the fit's round trip."""
        for _ in range(2 if self.ignore_eos is None else 1):
            trace = await self.call(self.plan.ladder[0])
            self.traces.remove(trace)
            if trace.status != 400:
                break
        times = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            try:
                await self.client.models.list()
            except openai.APIError:
                return  # no /models here: the fitted overhead keeps the round trip
            times.append(time.perf_counter() - started)
        self.round_trip_s = min(times)  # the least it costs: spikes are the network's or the machine's

    async def run(self) -> list[CallTrace]:
        budget = [self.plan.max_requests - WARM_UP_CALLS]
        await self.warm_up()
        for level in self.plan.ladder:
            if budget[0] <= 0 or time.perf_counter() >= self.deadline:
                break
            await asyncio.gather(*(self.client_loop(level, budget) for _ in range(level)))
            done = [t for t in self.traces if t.concurrency == level]
            print(_level_line(level, done), flush=True)
        return self.traces


def _rate_limit_headers(headers: Any) -> dict[str, str]:
    return {k: v for k in RATE_LIMIT_HEADERS if (v := headers.get(k)) is not None}


def _retry_after(headers: dict[str, str]) -> float:
    try:
        return float(headers.get("retry-after", "1"))
    except ValueError:
        return 1.0


def _level_line(level: int, traces: list[CallTrace]) -> str:
    ok = [o for t in traces if (o := t.observation()) is not None]
    statuses = sorted({t.status for t in traces if t.status != 200})
    if not ok:
        first_error = next((t.error for t in traces if t.error), "")
        return f"  {level:>3} concurrent: no call completed (statuses {statuses}; {first_error})"
    ttft = sorted(o.ttft for o in ok)[len(ok) // 2] * 1000
    gaps = sorted(g for o in ok if (g := o.inter_token) is not None)
    gap = f", between tokens p50 {gaps[len(gaps) // 2] * 1000:.1f} ms" if gaps else ""
    errors = f", errors {statuses}" if statuses else ""
    return f"  {level:>3} concurrent: {len(ok)} calls, TTFT p50 {ttft:.0f} ms{gap}{errors}"


def upstream_profile(
    fitted: Fit,
    traces: list[CallTrace],
    observations: list[Observation],
    args: argparse.Namespace,
    ignore_eos: bool | None,
    round_trip_s: float = 0.0,
) -> dict[str, Any]:
    """The TOML document: [config] for the mock, [fit] for the reader (the mock ignores it)."""
    model = fitted.model
    config: dict[str, Any] = {
        "capacity": "batch",
        "chat_latency": f"const:{format_duration(fitted.overhead_s)}",
        "max_batch": model.max_batch,
        "step_base": format_duration(model.step_base),
        "step_per_seq": format_duration(model.step_per_seq),
        "prefill_per_token": format_duration(model.prefill_per_token),
        "thrash": round(model.thrash, 4),
    }
    limits = {k: v for t in traces for k, v in t.rate_limit.items()}
    for header, key in (("x-ratelimit-limit-requests", "rpm"), ("x-ratelimit-limit-tokens", "tpm")):
        if header in limits and limits[header].isdigit():
            config[key] = int(limits[header])
    throttled = [t for t in traces if t.status == 429]
    return {
        "description": f"Fitted by `ragload probe-upstream` to {args.model} at {args.base_url}",
        "config": config,
        "fit": {
            "probed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "base_url": args.base_url,
            "model": args.model,
            "ladder": [int(c) for c in sorted({t.concurrency for t in traces})],
            "calls": len(traces),
            "completed": len(observations),
            "rate_limited": len(throttled),
            "rate_limit_headers": limits,
            "ignore_eos": bool(ignore_eos),
            "round_trip_ms": round(round_trip_s * 1000, 2),
            "rms_relative_error": round(fitted.rms_relative_error, 4),
            "max_batch_is_lower_bound": fitted.batch_is_lower_bound,
            "notes": fitted.notes,
            "levels": level_table(observations, fitted),
        },
    }


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers of at least 1, got '{text}'")
    return values


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--base-url",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="the endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL)",
    )
    parser.add_argument(
        "--api-key", default=None, help="API key (default: $OPENAI_API_KEY, or 'none' for servers without)"
    )
    parser.add_argument("--model", required=True, help="the model name to send")
    parser.add_argument(
        "--max-requests", type=_positive(int), required=True, help="hard cap on calls sent (required)"
    )
    parser.add_argument(
        "--max-seconds",
        type=_positive(float),
        required=True,
        help="hard cap on the probe's duration (required)",
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=_int_list(DEFAULT_LADDER),
        help=f"the ladder of concurrent calls (default: {DEFAULT_LADDER}); cut to fit --max-requests",
    )
    parser.add_argument(
        "--rounds", type=_positive(int), default=3, help="calls per client at each step (default: 3)"
    )
    parser.add_argument(
        "--max-tokens", type=_positive(int), default=32, help="output tokens asked per call (default: 32)"
    )
    parser.add_argument(
        "--prompt-words",
        type=_int_list,
        default=_int_list(DEFAULT_PROMPT_WORDS),
        help=f"prompt sizes in words, used in turn (default: {DEFAULT_PROMPT_WORDS})",
    )
    parser.add_argument(
        "--ignore-eos",
        choices=("auto", "on", "off"),
        default="auto",
        help="send vLLM's ignore_eos (auto: try it, drop it if the server refuses it)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="the profile to write (default: upstream-MODEL.toml)"
    )
    parser.add_argument("--trace", type=Path, default=None, help="also write every call's timings as JSON")


def main(args: argparse.Namespace) -> int:
    if not args.base_url:
        print("ragload probe-upstream: --base-url (or $OPENAI_BASE_URL) is required", file=sys.stderr)
        return 2
    ladder = plan_within(args.concurrency, args.rounds, args.max_requests - WARM_UP_CALLS)
    if not ladder:
        print(
            f"ragload probe-upstream: --max-requests {args.max_requests} is too few for even the first step "
            f"({args.concurrency[0]} x {args.rounds} calls)",
            file=sys.stderr,
        )
        return 2
    plan = Plan(ladder, args.rounds, args.max_tokens, args.prompt_words, args.max_requests, args.max_seconds)
    if ladder != args.concurrency:
        print(f"ladder cut to {ladder} to stay within --max-requests {args.max_requests}")
    print(
        f"probing {args.model} at {args.base_url}: concurrency {ladder}, {args.rounds} calls per client, "
        f"{args.max_tokens} output tokens, prompts of {args.prompt_words} words; at most "
        f"{plan.requests + WARM_UP_CALLS} "
        f"calls (cap {args.max_requests}) and {args.max_seconds:g} s (hard caps)",
        flush=True,
    )
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY") or "none"
    ignore_eos = {"auto": None, "on": True, "off": False}[args.ignore_eos]
    traces, ignore_eos, round_trip_s = asyncio.run(
        _probe(args.base_url, api_key, args.model, plan, ignore_eos)
    )
    observations = [o for t in traces if (o := t.observation()) is not None]
    if args.trace:
        args.trace.write_text(json.dumps([asdict(t) for t in traces], indent=1), encoding="utf-8")
    try:
        fitted = fit(observations, round_trip_s)
    except ValueError as exc:
        print(f"ragload probe-upstream: {exc}", file=sys.stderr)
        return 1
    out = args.out or Path(f"upstream-{args.model.replace('/', '_')}.toml")
    document = upstream_profile(fitted, traces, observations, args, ignore_eos, round_trip_s)
    out.write_text(tomli_w.dumps(document), encoding="utf-8")
    config = document["config"]
    print("fitted: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    print(f"rms relative error of the fit: {fitted.rms_relative_error:.1%}; " + " ".join(fitted.notes))
    if fitted.rms_relative_error > NOISY_FIT:
        print(
            f"warning: the model explains the calls only to {fitted.rms_relative_error:.0%}: the timings are "
            "noisy (a busy machine or network?) or the server is not a batching engine; probe again, longer "
            "(--rounds), and compare the fits",
            flush=True,
        )
    print(f"wrote {out}: ragload mock --upstream {out}")
    return 0


async def _probe(
    base_url: str, api_key: str, model: str, plan: Plan, ignore_eos: bool | None
) -> tuple[list[CallTrace], bool | None, float]:
    """Every call measured, whether ignore_eos was used, and the round trip of a trivial request."""
    async with AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as client:
        prober = Prober(client, model, plan, ignore_eos)
        try:
            await asyncio.wait_for(prober.run(), timeout=plan.max_seconds)
        except TimeoutError:
            print(f"stopped at --max-seconds {plan.max_seconds:g}", flush=True)
        return [t for t in prober.traces if t.status or t.error], prober.ignore_eos, prober.round_trip_s
