"""The LLM clients (embeddings + chat), sync and async, on the official `openai` SDK.

We use the latest SDK (3.x), which runs on `httpx2`; unit tests fake the upstream with
`httpx2.MockTransport` passed in as `http_client` (respx patches `httpx` only and never sees these calls).
Every SDK error leaves this module as one of the RAG core's errors (system/rag/errors.py), and every call
goes through the LLM circuit breaker and its metrics (system/rag/breaker.py).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.create_embedding_response import CreateEmbeddingResponse

from system.rag.breaker import llm_guard
from system.rag.errors import RagError, UpstreamTimeout, UpstreamUnavailable
from system.rag.schemas import Usage
from system.rag.settings import RagSettings

DEFAULT_RETRY_AFTER_S = 1.0  # what a 503/connection error suggests when the upstream gives no Retry-After
MAX_CONNECT_TIMEOUT_S = 5.0  # a loopback or LAN upstream that does not accept within 5 s is down


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    usage: Usage


def parse_retry_after(headers: Mapping[str, str] | None, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return default
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return _sane(float(millis) / 1000, default)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return default
    try:
        return _sane(float(value), default)
    except ValueError:
        pass
    when = email.utils.parsedate_tz(value)
    if when is None:
        return default
    return _sane(email.utils.mktime_tz(when) - time.time(), default)


def _sane(seconds: float, default: float) -> float:
    return max(0.0, seconds) if math.isfinite(seconds) else default


@contextmanager
def upstream_errors(what: str) -> Iterator[None]:
    """Translate the SDK's exceptions into RagError subclasses (order matters: timeout ⊂ connection error)."""
    try:
        yield
    except openai.APITimeoutError as exc:
        raise UpstreamTimeout(f"{what}: the LLM upstream did not answer in time") from exc
    except openai.APIConnectionError as exc:
        raise UpstreamUnavailable(f"{what}: cannot reach the LLM upstream ({exc})") from exc
    except openai.RateLimitError as exc:
        retry_after = parse_retry_after(exc.response.headers)
        raise UpstreamUnavailable(f"{what}: rate limited by the LLM upstream (429)", retry_after) from exc
    except openai.APIStatusError as exc:
        if exc.status_code >= 500:
            retry_after = parse_retry_after(exc.response.headers)
            message = f"{what}: the LLM upstream failed ({exc.status_code})"
            raise UpstreamUnavailable(message, retry_after) from exc
        raise RagError(
            f"{what}: the LLM upstream rejected the request ({exc.status_code}: {exc.message})"
        ) from exc
    except openai.OpenAIError as exc:
        raise RagError(f"{what}: unexpected answer from the LLM upstream ({exc})") from exc


def _timeout(settings: RagSettings) -> httpx2.Timeout:
    return httpx2.Timeout(settings.llm_timeout_s, connect=min(MAX_CONNECT_TIMEOUT_S, settings.llm_timeout_s))


def _vectors(response: CreateEmbeddingResponse, expected: int, dim: int) -> list[list[float]]:
    data = sorted(response.data, key=lambda item: item.index)
    if len(data) != expected:
        raise RagError(f"embed: asked for {expected} embeddings, got {len(data)}")
    for item in data:
        if len(item.embedding) != dim:
            raise RagError(f"embed: the model returned {len(item.embedding)} dimensions, EMBED_DIM is {dim}")
    return [list(item.embedding) for item in data]


def _answer(completion: ChatCompletion) -> ChatAnswer:
    if not completion.choices:
        raise RagError("chat: the LLM upstream returned no choice")
    text = completion.choices[0].message.content or ""
    usage = completion.usage
    if usage is None:
        return ChatAnswer(text, Usage())
    return ChatAnswer(
        text, Usage(**usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}))
    )


class LLMClient:
    """Sync client: one connection pool per instance; thread-safe (httpx2.Client is)."""

    def __init__(self, settings: RagSettings, http_client: httpx2.Client | None = None) -> None:
        self.settings = settings
        self._client = openai.OpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=_timeout(settings),
            max_retries=settings.llm_max_retries,
            http_client=http_client,
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with llm_guard("embed"), upstream_errors("embed"):
            response = self._client.embeddings.create(
                input=list(texts), model=self.settings.embed_model, dimensions=self.settings.embed_dim
            )
        return _vectors(response, len(texts), self.settings.embed_dim)

    def chat(self, messages: list[ChatCompletionMessageParam]) -> ChatAnswer:
        with llm_guard("chat"), upstream_errors("chat"):
            completion = self._client.chat.completions.create(
                model=self.settings.chat_model, messages=messages, max_tokens=self.settings.max_answer_tokens
            )
        return _answer(completion)

    def close(self) -> None:
        self._client.close()


class AsyncLLMClient:
    """Async client: bind one instance to one event loop (its connection pool belongs to that loop)."""

    def __init__(self, settings: RagSettings, http_client: httpx2.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=_timeout(settings),
            max_retries=settings.llm_max_retries,
            http_client=http_client,
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with llm_guard("embed"), upstream_errors("embed"):
            response = await self._client.embeddings.create(
                input=list(texts), model=self.settings.embed_model, dimensions=self.settings.embed_dim
            )
        return _vectors(response, len(texts), self.settings.embed_dim)

    async def chat(self, messages: list[ChatCompletionMessageParam]) -> ChatAnswer:
        with llm_guard("chat"), upstream_errors("chat"):
            completion = await self._client.chat.completions.create(
                model=self.settings.chat_model, messages=messages, max_tokens=self.settings.max_answer_tokens
            )
        return _answer(completion)

    async def aclose(self) -> None:
        await self._client.close()
