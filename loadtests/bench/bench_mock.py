"""`ragload bench-mock`: is the mock fast enough never to be the bottleneck, and does it keep time?

1. Throughput: zero-latency chat completions per second, closed loop over many keep-alive connections. Goal
   ≥ 4,000/s, with the unbounded model and with the capacity model on (an engine with zero-length steps, so
   every call still passes the scheduler, one step per token).
2. Added latency: with 1,000 calls in flight, how much later than scheduled do answers arrive (p99, goal
   ≤ 2 ms)? Unbounded: `const:1s` for every call. Capacity model: 250 calls decode in 12 ms steps and the
   rest wait for a slot; each answer's schedule is its `x-mock-scheduled-ms` header. The 1,000 connections
   start staggered over one second, so that arrivals are spread evenly (the steady state of 1,000 calls in
   flight at about 1 s each). A single synchronised burst of 1,000 would measure something else: one core
   answering 1,000 calls due in the same millisecond.
3. Streaming clock: an independent streaming client (this process's clock) at 8 and 32 concurrent streams,
   time to first token 50 ms, 200 tokens/s, 32 tokens: 205 ms by the schedule. Goal: total and inter-token
   time within 2 % of it. The same through the engine (5 ms steps: 5 ms between tokens). Then rising stream
   counts until the mock's one core falls behind (an error above 2 %).

The server is a real `ragload mock` process pinned to one core; the load generator is this process, pinned to
another, with minimal HTTP/1.1 clients on uvloop (mocks/bench_clients.py), several times cheaper per call than
the server, so that the server is measured. Both processes' CPU use is printed: the server near 100 % and the
generator well below means the figure is the server's. This is a benchmark, not a test: it asserts nothing and
exits 0 whatever it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import urllib.request
from dataclasses import dataclass

import orjson
import psutil
import uvloop

from loadtests.bench.clients import (
    KeepAliveConnection,
    StreamConnection,
    StreamTiming,
    close_all,
    open_connections,
)
from loadtests.stack.services import ManagedProcess, free_port, ragload_command

HOST = "127.0.0.1"
THROUGHPUT_GOAL_RPS = 4000.0
ADDED_P99_GOAL_MS = 2.0
CLOCK_GOAL = 0.02  # streaming: total and inter-token time within 2 % of the schedule
CONFIGURED_LATENCY_S = 1.0
STREAM_TTFT_S, STREAM_RATE, STREAM_TOKENS = 0.050, 200.0, 32
STREAM_SCHEDULE_S = STREAM_TTFT_S + (STREAM_TOKENS - 1) / STREAM_RATE  # 205 ms
ENGINE_STEP_S = 0.005
STREAM_COUNTS = (8, 32)
RISING_STREAM_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024)
UNBOUNDED = {"capacity": "unbounded"}
ZERO_STEPS = {"step_base": "0ms", "step_per_seq": "0ms", "prefill_per_token": "0ms", "thrash": 0}
ENGINE_AT_ZERO = {"capacity": "batch", "chat_latency": "const:0ms", "max_batch": 256, **ZERO_STEPS}
ENGINE_IN_FLIGHT = {**ENGINE_AT_ZERO, "max_batch": 250, "step_base": "12ms"}
STREAM_UNBOUNDED = {
    **UNBOUNDED,
    "chat_ttft": f"const:{STREAM_TTFT_S * 1000:g}ms",
    "chat_token_rate": STREAM_RATE,
}
# Through the engine: 45 ms before it, then a 5 ms step per token (the first also waits for a step boundary).
STREAM_ENGINE = {**ENGINE_AT_ZERO, "chat_latency": "const:45ms", "max_batch": 4096, "step_base": "5ms"}
# A RAG-sized prompt (four passages), so the server parses and answers what the real pipeline sends.
PASSAGE = (
    "The json module exposes an API familiar to users of the standard library marshal and pickle modules. "
    "It encodes Python objects as JSON text and decodes JSON documents into dictionaries and lists, with "
    "hooks for custom types, and it never executes code while parsing untrusted input from the network. "
)


def chat_request_bytes(port: int, **extra: object) -> bytes:
    context = "\n".join(f"[{i}] (source: doc-{i}#{i}) {PASSAGE}" for i in range(1, 5))
    body = orjson.dumps(
        {
            "model": "mock-chat",
            "messages": [
                {"role": "system", "content": "Answer from the context only and cite sources as [n]."},
                {"role": "user", "content": f"Context:\n{context}\n\nQuestion: how do I parse JSON?"},
            ],
            "max_tokens": 64,
            **extra,
        }
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def stream_request_bytes(port: int) -> bytes:
    return chat_request_bytes(port, stream=True, max_tokens=STREAM_TOKENS, ignore_eos=True)


@dataclass
class LoadResult:
    latencies: list[float]
    scheduled: list[float]  # each answer's x-mock-scheduled-ms, in seconds
    non_ok: int
    seconds: float
    generator_cpu_s: float


async def closed_loop(
    connections: list[KeepAliveConnection],
    request: bytes,
    warmup_s: float,
    duration_s: float,
    stagger_s: float,
) -> LoadResult:
    """Every connection calls in a loop; samples are kept from `warmup_s` to `warmup_s + duration_s`."""
    begin = time.perf_counter()
    measure_from, measure_to = begin + warmup_s, begin + warmup_s + duration_s
    latencies: list[float] = []
    scheduled: list[float] = []
    non_ok = 0

    async def user(index: int, connection: KeepAliveConnection) -> None:
        nonlocal non_ok
        await asyncio.sleep(stagger_s * index / len(connections))
        while time.perf_counter() < measure_to:
            sent = time.perf_counter()
            status, seconds = await connection.call(request)
            if measure_from <= sent and connection.done_at <= measure_to:
                latencies.append(seconds)
                scheduled.append(connection.scheduled_s)
                non_ok += status != 200

    cpu_before = time.process_time()
    await asyncio.gather(*(user(i, c) for i, c in enumerate(connections)))
    return LoadResult(latencies, scheduled, non_ok, duration_s, time.process_time() - cpu_before)


def configure(port: int, **changes: object) -> None:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/_mock/config", data=json.dumps(changes).encode(), method="PUT"
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def server_chat_calls(port: int) -> int:
    with urllib.request.urlopen(f"http://{HOST}:{port}/_mock/stats", timeout=5) as response:
        endpoints = json.load(response)["endpoints"]
    return int(endpoints.get("/v1/chat/completions", {}).get("requests", 0))


def check_answer(port: int, request: bytes) -> None:
    """One call through urllib first: the benchmark measures real answers, not errors."""
    body = request.split(b"\r\n\r\n", 1)[1]
    call = urllib.request.Request(
        f"http://{HOST}:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(call, timeout=5) as response:
        answer = json.load(response)["choices"][0]["message"]["content"]
    print(f"sample answer: {answer[:100]}")


def pin_cores() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, generator cores): two different cores if this process may use two, else no pinning."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[0]}, {allowed[1]}


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


async def throughput(port: int, server: psutil.Process, args: argparse.Namespace, label: str) -> None:
    request = chat_request_bytes(port)
    connections = await open_connections(KeepAliveConnection, HOST, port, args.connections)
    server.cpu_percent()
    calls_before = server_chat_calls(port)
    result = await closed_loop(connections, request, args.warmup, args.duration, stagger_s=0.0)
    server_cpu = server.cpu_percent()
    rps = len(result.latencies) / result.seconds
    generator_cpu = 100 * result.generator_cpu_s / (args.warmup + args.duration)
    print(
        f"throughput, {label}: {rps:,.0f} zero-latency chat calls/s (goal >= {THROUGHPUT_GOAL_RPS:,.0f}); "
        f"{rps / max(server_cpu, 1) * 100:,.0f} per second of the server's CPU, the figure that holds when "
        "the core is shared "
        f"[{args.connections} connections, {args.duration:g} s measured after {args.warmup:g} s warm-up, "
        f"non-200: {result.non_ok}, server CPU {server_cpu:.0f} %, generator CPU {generator_cpu:.0f} %; "
        f"the server counted {server_chat_calls(port) - calls_before:,} chat calls in the whole run]",
        flush=True,
    )
    close_all(connections)


async def added_latency(
    port: int, server: psutil.Process, args: argparse.Namespace, label: str, burst: bool
) -> None:
    request = chat_request_bytes(port)
    connections = await open_connections(KeepAliveConnection, HOST, port, args.in_flight)
    server.cpu_percent()
    result = await closed_loop(connections, request, args.warmup + 1.0, args.duration, stagger_s=1.0)
    server_cpu = server.cpu_percent()
    added_ms = [(got - due) * 1000 for got, due in zip(result.latencies, result.scheduled, strict=True)]
    print(
        f"added latency, {label}, {args.in_flight} in flight: p99 {percentile(added_ms, 0.99):.2f} ms "
        f"(goal <= {ADDED_P99_GOAL_MS:g} ms), p50 {statistics.median(added_ms):.2f} ms, "
        f"max {max(added_ms):.2f} ms [{len(added_ms):,} calls, mean scheduled "
        f"{statistics.mean(result.scheduled) * 1000:.0f} ms, non-200: {result.non_ok}, "
        f"server CPU {server_cpu:.0f} %]",
        flush=True,
    )
    if burst:
        answers = await asyncio.gather(*(connection.call(request) for connection in connections))
        burst_ms = [(seconds - CONFIGURED_LATENCY_S) * 1000 for _, seconds in answers]
        print(
            f"for comparison, one synchronised burst of {len(answers)} calls: "
            f"added p99 {percentile(burst_ms, 0.99):.1f} ms, max {max(burst_ms):.1f} ms "
            "(calls falling due in the same instant are answered one after another)",
            flush=True,
        )
    close_all(connections)


@dataclass
class StreamClock:
    streams: int
    timings: list[StreamTiming]
    server_late_ms: list[float]  # per call, the server's own record: last byte handed over minus its deadline
    server_cpu: float
    generator_cpu: float

    @property
    def total_error(self) -> float:
        """Mean last-token time against the schedule, as a fraction (+0.02: 2 % late)."""
        return statistics.mean(t.tokens[-1] for t in self.timings) / STREAM_SCHEDULE_S - 1

    def gap_error(self, scheduled_gap: float) -> float:
        return statistics.mean(t.inter_token for t in self.timings) / scheduled_gap - 1

    def line(self, label: str, scheduled_gap: float, with_total: bool = True) -> str:
        ttft = statistics.median(t.ttft for t in self.timings) * 1000
        gap = statistics.mean(t.inter_token for t in self.timings) * 1000
        lasts = [t.tokens[-1] * 1000 for t in self.timings]
        total = (
            f"total {statistics.mean(lasts):.1f} ms ({self.total_error:+.1%}, "
            f"p95 {percentile(lasts, 0.95):.1f} ms), "
            if with_total
            else ""
        )
        late = self.server_late_ms
        return (
            f"{label}, {self.streams} streams: {total}between tokens {gap:.3f} ms "
            f"({self.gap_error(scheduled_gap):+.1%}), TTFT p50 {ttft:.1f} ms; the server's own record: "
            f"last token {statistics.median(late):+.2f} ms from its deadline "
            f"(p95 {percentile(late, 0.95):+.2f}) "
            f"[{len(self.timings):,} streams, server CPU {self.server_cpu:.0f} %, "
            f"generator CPU {self.generator_cpu:.0f} %]"
        )


def server_lateness_ms(port: int) -> list[float]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/_mock/calls", timeout=10) as response:
        log = json.load(response)
    fields = log["fields"]
    status, scheduled, actual = (fields.index(k) for k in ("status", "scheduled_ms", "actual_ms"))
    return [row[actual] - row[scheduled] for row in log["calls"] if row[status] == 200]


async def stream_clock(
    port: int, server: psutil.Process, streams: int, warmup_s: float, duration_s: float
) -> StreamClock:
    """`streams` connections, each streaming one answer after another, started spread over one schedule."""
    request = stream_request_bytes(port)
    connections = await open_connections(StreamConnection, HOST, port, streams)
    urllib.request.urlopen(
        urllib.request.Request(f"http://{HOST}:{port}/_mock/stats", method="DELETE")
    ).close()
    begin = time.perf_counter()
    measure_from, measure_to = begin + warmup_s, begin + warmup_s + duration_s
    timings: list[StreamTiming] = []

    async def user(index: int, connection: StreamConnection) -> None:
        await asyncio.sleep(STREAM_SCHEDULE_S * index / streams)
        while time.perf_counter() < measure_to:
            sent = time.perf_counter()
            timing = await connection.stream(request)
            if sent >= measure_from and len(timing.tokens) == STREAM_TOKENS:
                timings.append(timing)

    server.cpu_percent()
    cpu_before = time.process_time()
    await asyncio.gather(*(user(i, c) for i, c in enumerate(connections)))
    generator_cpu = 100 * (time.process_time() - cpu_before) / (time.perf_counter() - begin)
    server_cpu = server.cpu_percent()
    close_all(connections)
    return StreamClock(streams, timings, server_lateness_ms(port), server_cpu, generator_cpu)


def falls_behind_at(results: list[StreamClock]) -> StreamClock | None:
    """The smallest stream count from which on every count tried missed the 2 % goal (one noisy miss below
    counts that keep time, on a machine shared with other work, is not the mock falling behind)."""
    found = None
    for result in reversed(results):
        if max(result.total_error, result.gap_error(1 / STREAM_RATE)) <= CLOCK_GOAL:
            break
        found = result
    return found


async def streaming(port: int, server: psutil.Process, args: argparse.Namespace) -> None:
    schedule = (
        f"TTFT {STREAM_TTFT_S * 1000:g} ms, {STREAM_RATE:g} tokens/s, {STREAM_TOKENS} tokens: "
        f"{STREAM_SCHEDULE_S * 1000:g} ms by the schedule; goal within {CLOCK_GOAL:.0%}"
    )
    print(f"streaming clock ({schedule}):", flush=True)
    configure(port, **STREAM_UNBOUNDED)
    for streams in STREAM_COUNTS:
        clock = await stream_clock(port, server, streams, args.warmup, args.duration)
        print("  " + clock.line("unbounded", 1 / STREAM_RATE), flush=True)
    configure(port, **STREAM_ENGINE)
    for streams in STREAM_COUNTS:
        clock = await stream_clock(port, server, streams, args.warmup, args.duration)
        label = f"engine, {ENGINE_STEP_S * 1000:g} ms steps"
        print("  " + clock.line(label, ENGINE_STEP_S, with_total=False), flush=True)
    configure(port, **STREAM_UNBOUNDED)
    print("rising stream counts (unbounded), until the mock falls behind:", flush=True)
    results: list[StreamClock] = []
    for streams in (n for n in RISING_STREAM_COUNTS if n <= args.max_streams):
        clock = await stream_clock(port, server, streams, args.warmup, args.duration)
        results.append(clock)
        print("  " + clock.line("unbounded", 1 / STREAM_RATE), flush=True)
        if len(results) > 1 and falls_behind_at(results[-2:]) is results[-2] and clock.server_cpu >= 90:
            break  # two misses in a row with the server's core full: it will not keep time further up
    behind = falls_behind_at(results)
    if behind is None:
        print(f"kept time at every count tried (up to {results[-1].streams} streams)", flush=True)
    else:
        limited = "the generator" if behind.generator_cpu >= 90 else "the mock"
        print(
            f"falls behind from {behind.streams} concurrent streams on (the client's error above "
            f"{CLOCK_GOAL:.0%} there and at every higher count tried; {limited} at "
            f"{max(behind.server_cpu, behind.generator_cpu):.0f} % of its core there)",
            flush=True,
        )
    # The same question asked of the server's own record (its last token against its deadline), which
    # leaves out what the network and a busy machine add before a request reaches the mock.
    late = next(
        (r for r in results if statistics.median(r.server_late_ms) > CLOCK_GOAL * STREAM_SCHEDULE_S * 1000),
        None,
    )
    print(
        "by the server's own record: "
        + (
            f"its median last token is more than {CLOCK_GOAL:.0%} of the schedule late from {late.streams} "
            "streams on"
            if late
            else "on time at every count tried"
        ),
        flush=True,
    )


async def run_benchmarks(port: int, server: psutil.Process, args: argparse.Namespace) -> None:
    check_answer(port, chat_request_bytes(port))
    await throughput(port, server, args, "unbounded")
    configure(port, **ENGINE_AT_ZERO)
    await throughput(port, server, args, "capacity model (zero-length steps)")
    configure(port, **UNBOUNDED, chat_latency=f"const:{CONFIGURED_LATENCY_S * 1000:g}ms")
    await added_latency(port, server, args, f"unbounded const:{CONFIGURED_LATENCY_S:g}s", burst=True)
    configure(port, **ENGINE_IN_FLIGHT)
    await added_latency(port, server, args, "capacity model (250 decoding, 12 ms steps)", burst=False)
    await streaming(port, server, args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n", 1)[0]
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds measured per figure (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up per figure (default: 1)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="keep-alive connections for the throughput runs (default: 64)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=1000,
        help="calls in flight for the added-latency runs (default: 1000)",
    )
    parser.add_argument(
        "--max-streams",
        type=int,
        default=max(RISING_STREAM_COUNTS),
        help=f"most concurrent streams tried when looking for where the mock falls behind "
        f"(default: {max(RISING_STREAM_COUNTS)})",
    )


def main(args: argparse.Namespace) -> int:
    port = free_port()
    server_cores, generator_cores = pin_cores()
    process = ManagedProcess(
        "mock",
        ragload_command(
            "mock", "--port", str(port), "--chat-latency", "const:0ms", "--embed-latency", "const:0ms"
        ),
        ready_url=f"http://{HOST}:{port}/v1/models",
    ).start()
    try:
        process.wait_ready()
        assert process.pid is not None
        if server_cores and generator_cores:
            os.sched_setaffinity(process.pid, server_cores)
            os.sched_setaffinity(0, generator_cores)
            print(f"mock server pinned to CPU {min(server_cores)}, generator to CPU {min(generator_cores)}")
        else:
            print(
                "only one CPU available: server and generator share it, so the figures understate the server"
            )
        uvloop.run(run_benchmarks(port, psutil.Process(process.pid), args))
    finally:
        process.stop()
    return 0
