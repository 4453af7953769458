"""Minimal HTTP/1.1 keep-alive clients for `ragload bench-mock`: one for whole answers, one for streams.

Each is an asyncio Protocol that finds only what the benchmark needs (status, Content-Length, the
x-mock-scheduled-ms header; for streams, when each token arrives), several times cheaper per call than the
mock's own work, so that the benchmark measures the server. Timestamps come from this process's clock, so
the streaming figures are an independent check of the mock's: nothing is taken from what the server says.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TypeVar, cast

TOKEN_MARK = b'"delta":{"content":'  # a word chunk (the role chunk's delta starts with "role")
DONE_MARK = b"data: [DONE]"
CHUNKED_END = b"0\r\n\r\n"
SCHEDULED_HEADER = b"x-mock-scheduled-ms:"


class KeepAliveConnection(asyncio.Protocol):
    """One connection, one call at a time; responses must carry Content-Length (the mock's do)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.done_at = 0.0
        self.scheduled_s = 0.0  # the x-mock-scheduled-ms of the last answer

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
        self.done_at = time.perf_counter()
        status = int(self.buffer[9:12])
        scheduled = self.buffer.find(SCHEDULED_HEADER, 0, end)
        if scheduled >= 0:
            value = self.buffer[scheduled + len(SCHEDULED_HEADER) : self.buffer.find(b"\r\n", scheduled)]
            self.scheduled_s = float(value) / 1000
        del self.buffer[: end + 4 + length]
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


@dataclass
class StreamTiming:
    """One streamed answer, seconds from the request's write: when each token arrived, when it ended."""

    tokens: list[float] = field(default_factory=list)
    done: float = 0.0

    @property
    def ttft(self) -> float:
        return self.tokens[0]

    @property
    def inter_token(self) -> float:
        """Mean time between tokens (first to last over the gaps): the drift shows here, jitter cancels."""
        return (self.tokens[-1] - self.tokens[0]) / (len(self.tokens) - 1)


class StreamConnection(asyncio.Protocol):
    """One connection, one streamed chat completion at a time (chunked SSE), timing every token."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scanned = 0
        self.started = 0.0
        self.timing = StreamTiming()
        self.waiter: asyncio.Future[StreamTiming] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter() - self.started
        self.buffer += data
        buffer, tokens = self.buffer, self.timing.tokens
        position = buffer.find(TOKEN_MARK, self.scanned)
        while position >= 0:
            tokens.append(now)
            position = buffer.find(TOKEN_MARK, position + len(TOKEN_MARK))
        self.scanned = max(0, len(buffer) - len(TOKEN_MARK))
        if buffer.endswith(CHUNKED_END) and buffer.find(DONE_MARK) >= 0:
            self.timing.done = now
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.timing)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def stream(self, request: bytes) -> StreamTiming:
        assert self.transport is not None
        self.buffer = bytearray()
        self.scanned = 0
        self.timing = StreamTiming()
        self.waiter = asyncio.get_running_loop().create_future()
        self.started = time.perf_counter()
        self.transport.write(request)
        return await self.waiter


P = TypeVar("P", bound=asyncio.Protocol)


async def open_connections(factory: type[P], host: str, port: int, count: int) -> list[P]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(factory, host, port)
        connections.append(protocol)
    return connections


def close_all(connections: list[KeepAliveConnection] | list[StreamConnection]) -> None:
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
