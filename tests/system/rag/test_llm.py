"""Unit tests of the LLM clients, with the upstream faked at the HTTP layer (httpx2.MockTransport)."""

from __future__ import annotations

import base64
import email.utils
import json
import time
from collections.abc import Callable

import httpx2
import numpy as np
import pytest

from system.rag.errors import RagError, UpstreamTimeout, UpstreamUnavailable
from system.rag.llm import AsyncLLMClient, LLMClient, parse_retry_after
from system.rag.settings import RagSettings

Handler = Callable[[httpx2.Request], httpx2.Response]
DIM = 8


def settings(**changes: object) -> RagSettings:
    values = {"openai_base_url": "http://upstream.test/v1", "embed_dim": DIM, "llm_max_retries": 0, **changes}
    return RagSettings.model_validate(values)


def embeddings_response(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    vectors = [np.full(body.get("dimensions", DIM), i + 1, dtype=np.float32) for i in range(len(inputs))]

    def encode(vector: np.ndarray) -> object:
        if body.get("encoding_format") == "base64":
            return base64.b64encode(vector.tobytes()).decode()
        return vector.tolist()

    data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
    return httpx2.Response(200, json={"object": "list", "data": data, "model": body["model"], "usage": usage})


def chat_response(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "the answer"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
    }
    return httpx2.Response(200, json=completion)


def upstream(handler: Handler | None = None) -> tuple[Handler, list[httpx2.Request]]:
    """A handler that records requests; default: a well-behaved OpenAI API."""
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if handler is not None:
            return handler(request)
        return (
            embeddings_response(request)
            if request.url.path.endswith("/embeddings")
            else chat_response(request)
        )

    return handle, seen


def sync_client(handler: Handler, **changes: object) -> LLMClient:
    return LLMClient(settings(**changes), http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def async_client(handler: Handler, **changes: object) -> AsyncLLMClient:
    transport = httpx2.MockTransport(handler)
    return AsyncLLMClient(settings(**changes), http_client=httpx2.AsyncClient(transport=transport))


def test_embed_returns_vectors_in_input_order_and_sends_model_and_dimensions() -> None:
    handler, seen = upstream()
    vectors = sync_client(handler).embed(["a", "b", "c"])
    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0]
    assert all(len(v) == DIM for v in vectors)
    body = json.loads(seen[0].content)
    assert body["model"] == "mock-embed" and body["dimensions"] == DIM and body["input"] == ["a", "b", "c"]


def test_embed_of_the_wrong_dimension_is_a_clear_error() -> None:
    def sixteen(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        body["dimensions"] = 16
        return embeddings_response(httpx2.Request("POST", request.url, content=json.dumps(body)))

    handler, _ = upstream(sixteen)
    with pytest.raises(RagError, match="16 dimensions, EMBED_DIM is 8"):
        sync_client(handler).embed(["a"])


def test_chat_returns_text_and_usage_and_honours_max_tokens() -> None:
    handler, seen = upstream()
    answer = sync_client(handler, max_answer_tokens=42).chat([{"role": "user", "content": "hi"}])
    assert answer.text == "the answer"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (
        11,
        2,
        13,
    )
    body = json.loads(seen[0].content)
    assert body["max_tokens"] == 42 and body["model"] == "mock-chat"


def test_timeouts_come_from_settings() -> None:
    handler, seen = upstream()
    sync_client(handler, llm_timeout_s=12.5).embed(["a"])
    timeout = seen[0].extensions["timeout"]
    assert timeout["read"] == 12.5 and timeout["connect"] == 5.0


def test_rate_limit_maps_to_unavailable_with_retry_after_from_the_header() -> None:
    handler, _ = upstream(lambda r: httpx2.Response(429, headers={"Retry-After": "7"}, json={"error": {}}))
    with pytest.raises(UpstreamUnavailable) as caught:
        sync_client(handler).chat([{"role": "user", "content": "hi"}])
    assert caught.value.retry_after == 7.0
    assert "429" in str(caught.value)


def test_server_error_maps_to_unavailable_with_http_date_retry_after() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    handler, _ = upstream(lambda r: httpx2.Response(503, headers={"Retry-After": when}, json={"error": {}}))
    with pytest.raises(UpstreamUnavailable) as caught:
        sync_client(handler).embed(["a"])
    assert 25 <= caught.value.retry_after <= 31


def test_server_error_without_retry_after_gets_the_default() -> None:
    handler, _ = upstream(lambda r: httpx2.Response(500, json={"error": {"message": "boom"}}))
    with pytest.raises(UpstreamUnavailable) as caught:
        sync_client(handler).embed(["a"])
    assert caught.value.retry_after == 1.0


def test_connection_error_maps_to_unavailable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    handler, _ = upstream(refuse)
    with pytest.raises(UpstreamUnavailable, match="cannot reach"):
        sync_client(handler).embed(["a"])


def test_timeout_maps_to_upstream_timeout() -> None:
    def too_slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=request)

    handler, _ = upstream(too_slow)
    with pytest.raises(UpstreamTimeout):
        sync_client(handler).chat([{"role": "user", "content": "hi"}])


def test_client_error_is_a_rag_error_but_not_retryable() -> None:
    handler, _ = upstream(lambda r: httpx2.Response(401, json={"error": {"message": "bad key"}}))
    with pytest.raises(RagError, match="401") as caught:
        sync_client(handler).embed(["a"])
    assert not isinstance(caught.value, UpstreamUnavailable | UpstreamTimeout)


def test_max_retries_from_settings_retries_a_503() -> None:
    answers = iter([httpx2.Response(503, headers={"retry-after-ms": "10"}, json={"error": {}})])

    def flaky(request: httpx2.Request) -> httpx2.Response:
        return next(answers, None) or embeddings_response(request)

    handler, seen = upstream(flaky)
    assert len(sync_client(handler, llm_max_retries=1).embed(["a"])) == 1
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, 1.0),
        ({}, 1.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float) -> None:
    assert parse_retry_after(httpx2.Headers(headers)) == expected


async def test_async_client_embeds_chats_and_maps_errors() -> None:
    handler, _ = upstream()
    client = async_client(handler)
    assert len((await client.embed(["a", "b"]))[1]) == DIM
    assert (await client.chat([{"role": "user", "content": "hi"}])).text == "the answer"
    await client.aclose()

    failing, _ = upstream(lambda r: httpx2.Response(429, headers={"Retry-After": "3"}, json={"error": {}}))
    with pytest.raises(UpstreamUnavailable) as caught:
        await async_client(failing).embed(["a"])
    assert caught.value.retry_after == 3.0


async def test_async_timeout_maps_to_upstream_timeout() -> None:
    def too_slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectTimeout("connect timed out", request=request)

    handler, _ = upstream(too_slow)
    with pytest.raises(UpstreamTimeout):
        await async_client(handler).chat([{"role": "user", "content": "hi"}])
