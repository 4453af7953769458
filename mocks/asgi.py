"""Raw ASGI primitives for the mock: read a JSON body, send JSON, send an OpenAI-shaped error.

The mock uses no framework on the request path: Starlette's Request/Response objects or FastAPI's pydantic
validation cost tens of microseconds per call, which is a large share of a budget of 250 µs per request
(≥ 4,000 requests/s on one core). orjson encodes and decodes, and numpy arrays go straight into orjson.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 32 * 1024 * 1024  # far above any prompt or embeddings batch; stops a runaway upload
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}`, like the OpenAI API does."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or []

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, option=_ORJSON_OPTIONS)


async def read_body(receive: Receive) -> bytes:
    first = await receive()
    body = first.get("body", b"")
    if not first.get("more_body", False):
        return bytes(body)
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body larger than {MAX_BODY_BYTES} bytes", code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json_object(receive: Receive) -> dict[str, Any]:
    raw = await read_body(receive)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return payload


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: Any, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = JSON_HEADERS + extra_headers if extra_headers else JSON_HEADERS
    await send_bytes(send, status, dumps(payload), headers)


async def send_error(send: Send, error: ApiError) -> None:
    await send_json(send, error.status, error.body(), error.headers)


def retry_after_headers(seconds: float) -> list[tuple[bytes, bytes]]:
    """`Retry-After` in whole seconds (rounded up) and `retry-after-ms`, which the openai SDK reads first."""
    whole = max(0, int(-(-seconds // 1)))
    return [(b"retry-after", str(whole).encode()), (b"retry-after-ms", str(round(seconds * 1000)).encode())]
