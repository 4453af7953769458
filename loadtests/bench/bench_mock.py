"""`ragload bench-mock`: is the mock fast enough never to be the bottleneck? Two figures, on one core each.

1. Throughput: zero-latency chat completions per second, closed loop over many keep-alive connections.
   Goal ≥ 4,000/s.
2. Added latency: with `const:1s` configured and 1,000 calls in flight, how much later than 1 s do answers
   arrive (p99, goal ≤ 2 ms)? The 1,000 connections start staggered over one second, so that arrivals are
   spread evenly (1,000/s, the steady state of 1,000 calls in flight at 1 s each). A single synchronised burst
   of 1,000 would measure something else: one core answering 1,000 calls due in the same millisecond.

The server is a real `ragload mock` process pinned to one core; the load generator is this process, pinned to
another, and uses a minimal HTTP/1.1 keep-alive client on uvloop (an asyncio Protocol that only finds the
status and Content-Length), several times cheaper per call than the server, so that the server is measured.
Both processes' CPU use is printed: the server near 100 % and the generator well below means the figure is
the server's. This is a benchmark, not a test: it asserts nothing and exits 0 whatever it measures.
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
from typing import cast

import orjson
import psutil
import uvloop

from loadtests.stack.services import ManagedProcess, free_port, ragload_command

HOST = "127.0.0.1"
THROUGHPUT_GOAL_RPS = 4000.0
ADDED_P99_GOAL_MS = 2.0
CONFIGURED_LATENCY_S = 1.0
# A RAG-sized prompt (four passages), so the server parses and answers what the real pipeline sends.
PASSAGE = (
    "The json module exposes an API familiar to users of the standard library marshal and pickle modules. "
    "It encodes Python objects as JSON text and decodes JSON documents into dictionaries and lists, with "
    "hooks for custom types, and it never executes code while parsing untrusted input from the network. "
)


def chat_request_bytes(port: int) -> bytes:
    context = "\n".join(f"[{i}] (source: doc-{i}#{i}) {PASSAGE}" for i in range(1, 5))
    body = orjson.dumps(
        {
            "model": "mock-chat",
            "messages": [
                {"role": "system", "content": "Answer from the context only and cite sources as [n]."},
                {"role": "user", "content": f"Context:\n{context}\n\nQuestion: how do I parse JSON?"},
            ],
            "max_tokens": 64,
        }
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class KeepAliveConnection(asyncio.Protocol):
    """One HTTP/1.1 connection, one call at a time; responses must carry Content-Length (the mock's do)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.done_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        start = self.buffer.find(b"content-length:", 0, end)
        length = int(self.buffer[start + 15 : self.buffer.find(b"\r\n", start)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        self.done_at = time.perf_counter()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def call(self, request: bytes) -> tuple[int, float]:
        """Send one request; return its status and seconds from write to the last byte read."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self.transport.write(request)
        status = await self.waiter
        return status, self.done_at - started


async def open_connections(port: int, count: int) -> list[KeepAliveConnection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(KeepAliveConnection, HOST, port)
        connections.append(protocol)
    return connections


@dataclass
class LoadResult:
    latencies: list[float]
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
    non_ok = 0

    async def user(index: int, connection: KeepAliveConnection) -> None:
        nonlocal non_ok
        await asyncio.sleep(stagger_s * index / len(connections))
        while time.perf_counter() < measure_to:
            sent = time.perf_counter()
            status, seconds = await connection.call(request)
            if measure_from <= sent and connection.done_at <= measure_to:
                latencies.append(seconds)
                non_ok += status != 200

    cpu_before = time.process_time()
    await asyncio.gather(*(user(i, c) for i, c in enumerate(connections)))
    return LoadResult(latencies, non_ok, duration_s, time.process_time() - cpu_before)


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


async def run_benchmarks(port: int, server: psutil.Process, args: argparse.Namespace) -> None:
    request = chat_request_bytes(port)
    check_answer(port, request)

    connections = await open_connections(port, args.connections)
    server.cpu_percent()
    calls_before = server_chat_calls(port)
    result = await closed_loop(connections, request, args.warmup, args.duration, stagger_s=0.0)
    server_cpu = server.cpu_percent()
    rps = len(result.latencies) / result.seconds
    generator_cpu = 100 * result.generator_cpu_s / (args.warmup + args.duration)
    print(
        f"throughput: {rps:,.0f} zero-latency chat calls/s (goal >= {THROUGHPUT_GOAL_RPS:,.0f}) "
        f"[{args.connections} connections, {args.duration:g} s measured after {args.warmup:g} s warm-up, "
        f"non-200: {result.non_ok}, server CPU {server_cpu:.0f} %, generator CPU {generator_cpu:.0f} %; "
        f"the server counted {server_chat_calls(port) - calls_before:,} chat calls in the whole run]",
        flush=True,
    )
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()

    configure(port, chat_latency=f"const:{CONFIGURED_LATENCY_S * 1000:g}ms")
    connections = await open_connections(port, args.in_flight)
    server.cpu_percent()
    result = await closed_loop(connections, request, args.warmup + 1.0, args.duration, stagger_s=1.0)
    server_cpu = server.cpu_percent()
    added_ms = [(seconds - CONFIGURED_LATENCY_S) * 1000 for seconds in result.latencies]
    print(
        f"added latency at {args.in_flight} in flight, {CONFIGURED_LATENCY_S:g} s configured: "
        f"p99 {percentile(added_ms, 0.99):.2f} ms (goal <= {ADDED_P99_GOAL_MS:g} ms), "
        f"p50 {statistics.median(added_ms):.2f} ms, max {max(added_ms):.2f} ms "
        f"[{len(added_ms):,} calls, non-200: {result.non_ok}, server CPU {server_cpu:.0f} %]",
        flush=True,
    )
    burst = await asyncio.gather(*(connection.call(request) for connection in connections))
    burst_ms = [(seconds - CONFIGURED_LATENCY_S) * 1000 for _, seconds in burst]
    print(
        f"for comparison, one synchronised burst of {len(burst)} calls: "
        f"added p99 {percentile(burst_ms, 0.99):.1f} ms, "
        f"max {max(burst_ms):.1f} ms (calls falling due in the same instant are answered one after another)",
        flush=True,
    )
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()


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
        help="keep-alive connections for the throughput run (default: 64)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=1000,
        help="calls in flight for the added-latency run (default: 1000)",
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
