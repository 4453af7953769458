"""The mock OpenAI-compatible server as a raw ASGI application.

Why raw ASGI and not FastAPI or Starlette: the mock must never be the bottleneck of a load test (goal:
≥ 4,000 zero-latency chat calls/s on one core). Per call, FastAPI's pydantic request models and Starlette's
Request and Response objects cost more than the mock's own work, so the request path here is a dict lookup,
orjson and two `send` calls; pydantic validates only the live config, which changes rarely. Served by uvicorn
with httptools and uvloop and no access log (see mocks/server.py).

Routes: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models[/ID], GET|PUT /_mock/config,
GET|DELETE /_mock/stats, GET /_mock/calls. Every error is OpenAI-shaped: `{"error": {"message", "type",
"param", "code"}}`. Every latency is a deadline from the call's start on one clock (mocks/clock.py), awaited
with asyncio, so thousands of calls can wait at once on one thread. Chat calls are timed by the capacity model
in force: `unbounded` (each call's own draw) or `batch` (the engine, mocks/engine.py). Each call's random
draws come from the seed and the request's content (mocks/draws.py), never from the order of arrivals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from mocks import clock
from mocks.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    ApiError,
    Receive,
    Scope,
    Send,
    dumps,
    read_json_object,
    send_bytes,
    send_error,
    send_json,
)
from mocks.capacity import Sequence
from mocks.chat import Answer, ChatCall, completion_body, compose_answer, parse_chat_request, stream_events
from mocks.config import ConfigError, MockConfig
from mocks.draws import Draw, Draws, request_key
from mocks.embedding_requests import embeddings_body, parse_embedding_request
from mocks.engine import Engine
from mocks.faults import Fault, Limits, concurrency_exceeded, draw_fault, fault_error
from mocks.models import model_not_found, model_object, models_body
from mocks.stats import Stats
from mocks.upstream import load_upstream

HANG_LIMIT_S = (
    600.0  # a hung call is answered 504 after this long, so a forgotten client cannot leak it forever
)
STATUS_CLIENT_GAVE_UP = 0  # recorded for a hang the client abandoned, or a stream cut off on purpose
FAILING_FAULTS = (Fault.SERVER_ERROR, Fault.UNAVAILABLE)
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


class StreamDropped(Exception):
    """Raised mid-stream to make uvicorn close the connection: the client sees an incomplete chunked body."""


class QuietDroppedStreams(logging.Filter):
    """Keeps uvicorn from logging a traceback for every stream cut off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamDropped))


class CallRecord:
    """What a handler learns about its call, for GET /_mock/calls and the x-ratelimit-* headers."""

    __slots__ = ("endpoint", "started", "draw", "draw_s", "scheduled_s", "ttft_s", "tokens", "headers")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.started = clock.now()
        self.draw: Draw | None = None
        self.draw_s: float | None = None
        self.scheduled_s: float | None = None
        self.ttft_s: float | None = None  # first token due, from the start (engine calls, streams)
        self.tokens = (0, 0)  # prompt, completion
        # x-ratelimit-*, once the call fit its limits: every answer to it carries them, errors too
        self.headers: list[tuple[bytes, bytes]] | tuple[()] = ()

    def row(self, status: int) -> tuple[Any, ...]:
        """The raw values; Stats.calls_dict formats them (off the request path)."""
        assert self.draw is not None
        draw = self.draw
        ended = clock.now() - self.started
        return (
            self.endpoint,
            draw.key,
            draw.occurrence,
            status,
            self.draw_s,
            self.scheduled_s,
            ended,
            *self.tokens,
            self.started,
            self.ttft_s,
        )


def _scheduled_header(seconds: float) -> tuple[bytes, bytes]:
    """When the model said the answer was complete, so a client can tell how late it came."""
    return (b"x-mock-scheduled-ms", f"{seconds * 1000:.3f}".encode())


Handler = Callable[[Receive, Send, CallRecord], Awaitable[int]]


class MockApp:
    def __init__(self, config: MockConfig | None = None) -> None:
        self.stats = Stats()
        self.config = config or MockConfig()
        self.draws = Draws(self.config.seed)
        self.limits = Limits(self.config.rpm, self.config.tpm)
        self.engine = Engine(self.config.batch_model())
        self.api_in_flight = 0
        self._api: dict[str, tuple[str, Handler]] = {
            CHAT_PATH: ("chat", self._chat),
            EMBEDDINGS_PATH: ("embeddings", self._embeddings),
        }

    def apply(self, changes: dict[str, Any]) -> MockConfig:
        """Change the live config; raises ConfigError and changes nothing if the result is invalid.
        `upstream` (a preset name or profile path) applies that profile's keys first."""
        if "upstream" in changes:
            rest = {key: value for key, value in changes.items() if key != "upstream"}
            if not isinstance(changes["upstream"], str):
                raise ConfigError("upstream: a preset name or the path of an upstream profile")
            changes = {**load_upstream(changes["upstream"]), **rest}
        new = self.config.updated(changes)
        if "seed" in changes:
            self.draws = Draws(new.seed)
        if (new.rpm, new.tpm) != (self.config.rpm, self.config.tpm):
            self.limits = Limits(new.rpm, new.tpm)
        if new.batch_model() != self.config.batch_model():
            self.engine.set_model(new.batch_model())
        self.config = new
        return new

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            api = self._api.get(path)
            if api is not None:
                if method != "POST":
                    raise ApiError(
                        405, f"{method} is not allowed on {path}; use POST.", code="method_not_allowed"
                    )
                await self._api_call(path, api, receive, send)
            else:
                await self._control(path, method, receive, send)
        except ApiError as error:
            await send_error(send, error)

    async def _api_call(self, path: str, api: tuple[str, Handler], receive: Receive, send: Send) -> None:
        stats = self.stats.endpoint(path)
        stats.requests += 1
        stats.in_flight += 1
        self.api_in_flight += 1
        status = STATUS_CLIENT_GAVE_UP
        record = CallRecord(api[0])
        try:
            limit = self.config.max_concurrent
            if limit and self.api_in_flight > limit:
                raise concurrency_exceeded(limit)
            status = await api[1](receive, send, record)
        except ApiError as error:
            status = error.status
            if record.headers:
                error.headers = [*error.headers, *record.headers]
            await send_error(send, error)
        finally:
            stats.in_flight -= 1
            self.api_in_flight -= 1
            stats.statuses[str(status)] += 1
            if status >= 400 or status == STATUS_CLIENT_GAVE_UP:
                stats.errors += 1
            if record.draw is not None:
                self.stats.record(record.row(status))

    def _draw_fault(self, stats_path: str, draw: Draw, streaming: bool) -> Fault:
        fault = draw_fault(self.config, draw.fault_u, streaming)
        if fault is not Fault.NONE:
            self.stats.endpoint(stats_path).faults[fault.value] += 1
        return fault

    # ---- chat ----------------------------------------------------------------------------------------------

    async def _chat(self, receive: Receive, send: Send, record: CallRecord) -> int:
        config = self.config
        call = parse_chat_request(await read_json_object(receive), config.models)
        started = record.started  # the call began when it reached the app, before its body was read
        answer = compose_answer(call)
        record.tokens = (call.prompt_tokens, len(answer.words))
        draw = record.draw = self.draws.draw(request_key(call.messages))
        record.headers = self.limits.check(call.model, call.prompt_tokens + len(answer.words))
        fault = self._draw_fault(CHAT_PATH, draw, call.stream)
        if fault is Fault.THROTTLED:
            raise fault_error(fault, config)
        if fault is Fault.HANG:
            return await self._hang(receive)
        if config.capacity == "batch":
            return await self._chat_in_engine(call, answer, send, record, fault)
        if call.stream:
            ttft = record.draw_s = record.ttft_s = (config.chat_ttft or config.chat_latency).quantile(
                draw.latency_u
            )
            rate = config.chat_token_rate
            words = len(answer.words)
            record.scheduled_s = ttft + ((words - 1) / rate if rate > 0 else 0.0)
            if fault in FAILING_FAULTS:
                await clock.sleep_until(started + ttft)
                raise fault_error(fault, config)
            tokens = _paced(started + ttft, rate, words)
            status = await self._stream(call, answer, send, tokens, fault is Fault.DROP, record.headers)
        else:
            delay = record.draw_s = record.scheduled_s = config.chat_latency.quantile(draw.latency_u)
            if delay > 0:
                await clock.sleep_until(started + delay)
            if fault in FAILING_FAULTS:
                raise fault_error(fault, config)
            status = await self._complete(call, answer, send, record)
        self._count_tokens(call, answer, status)
        return status

    async def _chat_in_engine(
        self, call: ChatCall, answer: Answer, send: Send, record: CallRecord, fault: Fault
    ) -> int:
        """Under the capacity model: the call's own draw first (time before the engine), then the engine."""
        config = self.config
        assert record.draw is not None
        overhead = record.draw_s = config.chat_latency.quantile(record.draw.latency_u)
        arrives = record.started + overhead
        if overhead > 0:
            await clock.sleep_until(arrives)
        seq = Sequence(call.prompt_tokens, len(answer.words), arrives, stream=call.stream)
        engine = self.engine
        engine.submit(seq)
        try:
            if call.stream:
                tokens = self._engine_tokens(seq)
                if fault in FAILING_FAULTS:
                    await anext(tokens)
                    raise fault_error(fault, config)
                status = await self._stream(call, answer, send, tokens, fault is Fault.DROP, record.headers)
            else:
                while seq.finished_at is None:
                    await engine.progress(seq)
                record.scheduled_s = seq.finished_at - record.started
                if fault in FAILING_FAULTS:
                    raise fault_error(fault, config)
                status = await self._complete(call, answer, send, record)
            if seq.finished_at is not None:
                record.scheduled_s = seq.finished_at - record.started
        finally:
            engine.abort(seq)
            if seq.first_token_at is not None:
                record.ttft_s = seq.first_token_at - record.started
        self._count_tokens(call, answer, status)
        return status

    async def _engine_tokens(self, seq: Sequence) -> AsyncIterator[int]:
        """How many tokens the engine has produced for `seq`, each time it has produced more."""
        seen = 0
        while seen < seq.output_tokens:
            while seq.produced == seen:
                await self.engine.progress(seq)
            seen = seq.produced
            yield seen

    async def _complete(self, call: ChatCall, answer: Answer, send: Send, record: CallRecord) -> int:
        headers = [*JSON_HEADERS, _scheduled_header(record.scheduled_s or 0.0), *record.headers]
        await send_bytes(send, 200, dumps(completion_body(call, answer)), headers)
        return 200

    async def _stream(
        self,
        call: ChatCall,
        answer: Answer,
        send: Send,
        tokens: AsyncIterator[int],
        drop: bool,
        headers: list[tuple[bytes, bytes]] | tuple[()],
    ) -> int:
        """The role chunk with the first word, then each word as `tokens` says it is due, then finish, usage
        and [DONE] with the last word. Words due together go out in one write."""
        events = stream_events(call, answer)
        words = len(answer.words)
        end = len(events) // 2 if drop else len(events)
        started = False
        sent = 0
        async for produced in tokens:
            upto = min(end, produced + 1 if produced < words else len(events))
            if not started:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]}
                )
                started = True
            last = upto == len(events)
            await send(
                {"type": "http.response.body", "body": b"".join(events[sent:upto]), "more_body": not last}
            )
            sent = upto
            if sent >= end:
                break
        if drop:
            raise StreamDropped(f"stream cut after {end} of {len(events)} events (mock fault)")
        return 200

    def _count_tokens(self, call: ChatCall, answer: Answer, status: int) -> None:
        if status == 200:
            self.stats.prompt_tokens += call.prompt_tokens
            self.stats.completion_tokens += len(answer.words)

    async def _hang(self, receive: Receive) -> int:
        """Answer nothing until the client disconnects (or HANG_LIMIT_S passes, then 504)."""

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(until_disconnect(), HANG_LIMIT_S)
        except TimeoutError:
            raise ApiError(
                504, f"mock hang fault: no answer for {HANG_LIMIT_S:.0f} s", "server_error", "timeout"
            ) from None
        return STATUS_CLIENT_GAVE_UP

    # ---- embeddings (always the per-call latency model) ---------------------------------------------------

    async def _embeddings(self, receive: Receive, send: Send, record: CallRecord) -> int:
        config = self.config
        call = parse_embedding_request(await read_json_object(receive), config.models)
        started = record.started  # the call began when it reached the app, before its body was read
        record.tokens = (call.prompt_tokens, 0)
        draw = record.draw = self.draws.draw(request_key(call.texts))
        record.headers = self.limits.check(call.model, call.prompt_tokens)
        fault = self._draw_fault(EMBEDDINGS_PATH, draw, streaming=False)
        if fault is Fault.THROTTLED:
            raise fault_error(fault, config)
        if fault is Fault.HANG:
            return await self._hang(receive)
        delay = record.draw_s = record.scheduled_s = config.embed_latency.quantile(draw.latency_u)
        if delay > 0:
            await clock.sleep_until(started + delay)
        if fault in FAILING_FAULTS:
            raise fault_error(fault, config)
        headers = [*JSON_HEADERS, _scheduled_header(delay), *record.headers]
        await send_bytes(send, 200, dumps(embeddings_body(call, config.embed_dim)), headers)
        return 200

    # ---- control -------------------------------------------------------------------------------------------

    async def _control(self, path: str, method: str, receive: Receive, send: Send) -> None:
        models = self.config.models
        if path == "/v1/models" and method == "GET":
            await send_bytes(send, 200, models_body(models))
        elif path.startswith("/v1/models/") and method == "GET":
            model_id = path.removeprefix("/v1/models/")
            if models and model_id not in models:
                raise model_not_found(model_id, models)
            await send_json(send, 200, model_object(model_id))
        elif path == "/_mock/config" and method == "GET":
            await send_json(send, 200, self.config.model_dump(mode="json"))
        elif path == "/_mock/config" and method == "PUT":
            await self._put_config(receive, send)
        elif path == "/_mock/stats" and method == "GET":
            await send_json(send, 200, self._stats())
        elif path == "/_mock/stats" and method == "DELETE":
            self.stats.reset()
            self.draws.reset()
            await send_json(send, 200, self._stats())
        elif path == "/_mock/calls" and method == "GET":
            await send_bytes(send, 200, orjson.dumps(self.stats.calls_dict()))
        elif path in ("/v1/models", "/_mock/config", "/_mock/stats", "/_mock/calls"):
            raise ApiError(405, f"{method} is not allowed on {path}.", code="method_not_allowed")
        else:
            raise ApiError(404, f"Unknown path {method} {path}.", code="unknown_url")

    def _stats(self) -> dict[str, Any]:
        stats = self.stats.as_dict()
        stats["capacity"] = self.config.capacity
        stats["engine"] = self.engine.stats()
        return stats

    async def _put_config(self, receive: Receive, send: Send) -> None:
        changes = await read_json_object(receive)
        try:
            config = self.apply(changes)
        except ConfigError as exc:
            raise ApiError(422, f"Invalid mock config: {exc}", code="invalid_config") from None
        await send_bytes(send, 200, orjson.dumps(config.model_dump(mode="json")))


async def _paced(first_at: float, rate: float, words: int) -> AsyncIterator[int]:
    """Unbounded streaming: the first word at `first_at`, word i at `first_at + (i - 1) / rate`, each an
    absolute deadline; when the loop wakes late, every word already due goes out at once."""
    if first_at > clock.now():
        await clock.sleep_until(first_at)
    if rate <= 0:
        yield words
        return
    produced = 1
    yield produced
    while produced < words:
        await clock.sleep_until(first_at + produced / rate)
        produced = min(words, max(produced + 1, 1 + int((clock.now() - first_at) * rate)))
        yield produced
