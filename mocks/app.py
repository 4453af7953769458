"""The mock OpenAI-compatible server as a raw ASGI application.

Why raw ASGI and not FastAPI or Starlette: the mock must never be the bottleneck of a load test (goal:
≥ 4,000 zero-latency chat calls/s on one core). Per call, FastAPI's pydantic request models and Starlette's
Request and Response objects cost more than the mock's own work, so the request path here is a dict lookup,
orjson and two `send` calls; pydantic validates only the live config, which changes rarely. Served by uvicorn
with httptools and uvloop and no access log (see mocks/server.py).

Routes: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models[/ID], GET|PUT /_mock/config,
GET|DELETE /_mock/stats. Every error is OpenAI-shaped: `{"error": {"message", "type", "param", "code"}}`.
Latency is spent with `await asyncio.sleep`, so thousands of calls can wait at once on one thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from mocks.asgi import (
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
from mocks.chat import CHAT_MODELS, ChatCall, completion_body, parse_chat_request, stream_events
from mocks.config import ConfigError, MockConfig
from mocks.embedding_requests import EMBED_MODELS, embeddings_body, parse_embedding_request
from mocks.faults import Fault, Limits, concurrency_exceeded, draw_fault, fault_error
from mocks.stats import Stats

HANG_LIMIT_S = (
    600.0  # a hung call is answered 504 after this long, so a forgotten client cannot leak it forever
)
STATUS_CLIENT_GAVE_UP = 0  # recorded for a hang the client abandoned, or a stream cut off on purpose

Handler = Callable[[Receive, Send], Awaitable[int]]


class StreamDropped(Exception):
    """Raised mid-stream to make uvicorn close the connection: the client sees an incomplete chunked body."""


class QuietDroppedStreams(logging.Filter):
    """Keeps uvicorn from logging a traceback for every stream cut off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamDropped))


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "ragload-mock"}


MODELS_BODY = dumps({"object": "list", "data": [_model_object(m) for m in (*CHAT_MODELS, *EMBED_MODELS)]})


class MockApp:
    def __init__(self, config: MockConfig | None = None) -> None:
        self.stats = Stats()
        self.config = config or MockConfig()
        self._reseed(self.config.seed)
        self.limits = Limits(self.config.rpm, self.config.tpm)
        self.api_in_flight = 0
        self._api: dict[str, Handler] = {
            "/v1/chat/completions": self._chat,
            "/v1/embeddings": self._embeddings,
        }

    def _reseed(self, seed: int) -> None:
        # Separate streams, so that turning faults on does not shift the latency draws (`random` hashes string
        # seeds with SHA-512, identically in every process).
        self.latency_rng = random.Random(f"{seed}:latency")
        self.fault_rng = random.Random(f"{seed}:faults")

    def apply(self, changes: dict[str, Any]) -> MockConfig:
        """Change the live config; raises ConfigError and changes nothing if the result is invalid."""
        new = self.config.updated(changes)
        if "seed" in changes:
            self._reseed(new.seed)
        if (new.rpm, new.tpm) != (self.config.rpm, self.config.tpm):
            self.limits = Limits(new.rpm, new.tpm)
        self.config = new
        return new

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            handler = self._api.get(path)
            if handler is not None:
                if method != "POST":
                    raise ApiError(
                        405, f"{method} is not allowed on {path}; use POST.", code="method_not_allowed"
                    )
                await self._api_call(path, handler, receive, send)
            else:
                await self._control(path, method, receive, send)
        except ApiError as error:
            await send_error(send, error)

    async def _api_call(self, path: str, handler: Handler, receive: Receive, send: Send) -> None:
        stats = self.stats.endpoint(path)
        stats.requests += 1
        stats.in_flight += 1
        self.api_in_flight += 1
        status = STATUS_CLIENT_GAVE_UP
        try:
            limit = self.config.max_concurrent
            if limit and self.api_in_flight > limit:
                raise concurrency_exceeded(limit)
            status = await handler(receive, send)
        except ApiError as error:
            status = error.status
            await send_error(send, error)
        finally:
            stats.in_flight -= 1
            self.api_in_flight -= 1
            stats.statuses[str(status)] += 1
            if status >= 400 or status == STATUS_CLIENT_GAVE_UP:
                stats.errors += 1

    def _draw_fault(self, stats_path: str, streaming: bool) -> Fault:
        fault = draw_fault(self.config, self.fault_rng, streaming)
        if fault is not Fault.NONE:
            self.stats.endpoint(stats_path).faults[fault.value] += 1
        return fault

    async def _chat(self, receive: Receive, send: Send) -> int:
        call = parse_chat_request(await read_json_object(receive))
        body = None if call.stream else completion_body(call)
        completion_tokens = body["usage"]["completion_tokens"] if body else min(call.max_tokens, 64)
        self.limits.check(call.model, call.prompt_tokens + completion_tokens)
        config = self.config
        fault = self._draw_fault("/v1/chat/completions", call.stream)
        if fault is Fault.THROTTLED:
            raise fault_error(fault, config)
        if fault is Fault.HANG:
            return await self._hang(receive)
        latency = config.chat_ttft if call.stream and config.chat_ttft else config.chat_latency
        delay = latency.sample(self.latency_rng)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault in (Fault.SERVER_ERROR, Fault.UNAVAILABLE):
            raise fault_error(fault, config)
        if call.stream:
            return await self._stream(call, send, drop=fault is Fault.DROP)
        await send_bytes(send, 200, dumps(body))
        return 200

    async def _stream(self, call: ChatCall, send: Send, drop: bool) -> int:
        """Role chunk and first word at once, then one word every 1/rate s, then finish, usage and [DONE]."""
        events = stream_events(call)
        rate = self.config.chat_token_rate
        word_chunks = len(events) - 3 - (1 if call.include_usage else 0)
        # Events before which the stream pauses: every word chunk after the first, when a token rate is set.
        paused = set(range(2, 1 + word_chunks)) if rate > 0 else set()
        end = len(events) // 2 if drop else len(events)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        batch: list[bytes] = []
        for index in range(end):
            if index in paused:
                await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
                batch = []
                await asyncio.sleep(1.0 / rate)
            batch.append(events[index])
        if drop:
            await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
            raise StreamDropped(f"stream cut after {end} of {len(events)} events (mock fault)")
        await send({"type": "http.response.body", "body": b"".join(batch), "more_body": False})
        return 200

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

    async def _embeddings(self, receive: Receive, send: Send) -> int:
        call = parse_embedding_request(await read_json_object(receive))
        self.limits.check(call.model, call.prompt_tokens)
        config = self.config
        fault = self._draw_fault("/v1/embeddings", streaming=False)
        if fault is Fault.THROTTLED:
            raise fault_error(fault, config)
        if fault is Fault.HANG:
            return await self._hang(receive)
        delay = config.embed_latency.sample(self.latency_rng)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault in (Fault.SERVER_ERROR, Fault.UNAVAILABLE):
            raise fault_error(fault, config)
        await send_bytes(send, 200, dumps(embeddings_body(call, config.embed_dim)))
        return 200

    async def _control(self, path: str, method: str, receive: Receive, send: Send) -> None:
        if path == "/v1/models" and method == "GET":
            await send_bytes(send, 200, MODELS_BODY)
        elif path.startswith("/v1/models/") and method == "GET":
            model_id = path.removeprefix("/v1/models/")
            if model_id not in (*CHAT_MODELS, *EMBED_MODELS):
                raise ApiError(
                    404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model"
                )
            await send_json(send, 200, _model_object(model_id))
        elif path == "/_mock/config" and method == "GET":
            await send_json(send, 200, self.config.model_dump(mode="json"))
        elif path == "/_mock/config" and method == "PUT":
            await self._put_config(receive, send)
        elif path == "/_mock/stats" and method == "GET":
            await send_json(send, 200, self.stats.as_dict())
        elif path == "/_mock/stats" and method == "DELETE":
            self.stats.reset()
            await send_json(send, 200, self.stats.as_dict())
        elif path in ("/v1/models", "/_mock/config", "/_mock/stats"):
            raise ApiError(405, f"{method} is not allowed on {path}.", code="method_not_allowed")
        else:
            raise ApiError(404, f"Unknown path {method} {path}.", code="unknown_url")

    async def _put_config(self, receive: Receive, send: Send) -> None:
        changes = await read_json_object(receive)
        try:
            config = self.apply(changes)
        except ConfigError as exc:
            raise ApiError(422, f"Invalid mock config: {exc}", code="invalid_config") from None
        await send_bytes(send, 200, orjson.dumps(config.model_dump(mode="json")))
