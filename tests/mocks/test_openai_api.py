"""The mock through the official openai SDK (sync, async, streaming): embeddings, chat, models."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import MockServer

CONTEXT_PROMPT = (
    "Context:\n"
    "[1] (source: json#0) The json module parses JSON text into Python objects. "
    "It is in the standard library.\n"
    "[2] (source: socket#4) Sockets are endpoints of a network connection.\n"
    "\n"
    "Question: How do I parse JSON?"
)
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Answer from the context only."},
    {"role": "user", "content": CONTEXT_PROMPT},
]


@pytest.fixture
def client(mock_server: MockServer) -> OpenAI:
    return OpenAI(base_url=mock_server.base_url, api_key="mock-key", max_retries=0)


@pytest.fixture
def async_client(mock_server: MockServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=mock_server.base_url, api_key="mock-key", max_retries=0)


def test_models_are_listed(client: OpenAI) -> None:
    assert {model.id for model in client.models.list()} == {"mock-chat", "mock-embed"}
    assert client.models.retrieve("mock-embed").id == "mock-embed"
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"  # any name, unless restricted


def test_openai_model_names_work_unchanged(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.model == "gpt-4o-mini"
    assert (completion.choices[0].message.content or "").startswith("According to [1]:")
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["How do I parse JSON?"])
    assert vectors.model == "text-embedding-3-small" and len(vectors.data[0].embedding) == 256
    stream = client.chat.completions.create(
        model="meta-llama/Llama-3.1-8B-Instruct", messages=MESSAGES, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("According to")


def test_a_models_list_restricts_the_names(mock_server: MockServer, client: OpenAI) -> None:
    mock_server.configure(models="gpt-4o-mini,text-embedding-3-small")
    assert mock_server.get_config()["models"] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="mock-chat", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gpt-4", input="x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("mock-embed")


def test_max_completion_tokens_is_honoured(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=4)
    assert completion.choices[0].message.content == "According to [1]: The"
    assert completion.choices[0].finish_reason == "length"


def test_ignore_eos_generates_exactly_max_tokens(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=50, extra_body={"ignore_eos": True}
    )
    words = (completion.choices[0].message.content or "").split()
    assert len(words) == 50 and completion.usage is not None and completion.usage.completion_tokens == 50
    assert words[:3] == ["According", "to", "[1]:"] and completion.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=40, stream=True, extra_body={"ignore_eos": True}
    )
    assert sum(1 for c in stream if c.choices and c.choices[0].delta.content) == 40


def test_continuous_usage_stats_put_the_usage_in_every_chunk(client: OpenAI) -> None:
    options: Any = {
        "include_usage": True,
        "continuous_usage_stats": True,
    }  # vLLM's key, not in the SDK's types
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=6, stream=True, stream_options=options
    )
    chunks = list(stream)
    assert all(chunk.usage is not None for chunk in chunks)
    produced = [chunk.usage.completion_tokens for chunk in chunks if chunk.usage is not None]
    assert produced == [0, 1, 2, 3, 4, 5, 6, 6, 6]  # role chunk, six words, finish, the final usage chunk
    without = client.chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    assert [chunk.usage is not None for chunk in without][-2:] == [False, True]


def test_embeddings_both_encodings_give_the_same_vectors(mock_server: MockServer, client: OpenAI) -> None:
    texts = ["How do I parse JSON?", "Sockets are network endpoints."]
    as_float = client.embeddings.create(model="mock-embed", input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model="mock-embed", input=texts)  # the SDK asks for base64 itself
    assert [item.index for item in as_float.data] == [0, 1]
    for a, b in zip(as_float.data, as_base64.data, strict=True):
        assert len(a.embedding) == 256
        np.testing.assert_array_equal(np.asarray(a.embedding, dtype=np.float32), np.asarray(b.embedding))
    assert as_float.usage.prompt_tokens == 5 + 4  # whitespace-separated words
    assert mock_server.get_config()["embed_dim"] == 256


def test_embeddings_are_deterministic_and_lexical(client: OpenAI) -> None:
    question, json_passage, other = (
        np.asarray(item.embedding)
        for item in client.embeddings.create(
            model="mock-embed",
            input=[
                "parse a JSON string",
                "json.loads parses JSON strings",
                "the socket module for networking",
            ],
        ).data
    )
    again = np.asarray(
        client.embeddings.create(model="mock-embed", input="parse a JSON string").data[0].embedding
    )
    np.testing.assert_array_equal(question, again)
    assert float(question @ json_passage) > float(question @ other)


def test_embeddings_dimensions_and_token_arrays(client: OpenAI) -> None:
    short = client.embeddings.create(
        model="mock-embed", input="hello world", dimensions=64, encoding_format="float"
    )
    assert len(short.data[0].embedding) == 64
    assert abs(float(np.linalg.norm(short.data[0].embedding)) - 1.0) < 1e-5
    tokens = client.embeddings.create(model="mock-embed", input=[[1, 2, 3], [1, 2, 3], [4, 5]])
    vectors = [np.asarray(item.embedding) for item in tokens.data]
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert not np.array_equal(vectors[0], vectors[2])
    assert tokens.usage.prompt_tokens == 8


def test_chat_quotes_the_first_passage(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="mock-chat", messages=MESSAGES)
    answer = completion.choices[0].message.content
    passage = "The json module parses JSON text into Python objects. It is in the standard library."
    assert answer == f"According to [1]: {passage}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(answer.split())
    assert completion.usage.prompt_tokens == len(CONTEXT_PROMPT.split()) + len(
        "Answer from the context only.".split()
    )


def test_chat_without_context_answers_from_the_question(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "Why?"}]
    )
    assert completion.choices[0].message.content == "You asked: Why. The mock has no context to answer from."


def test_chat_honours_max_tokens(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="mock-chat", messages=MESSAGES, max_tokens=5)
    assert completion.choices[0].message.content == "According to [1]: The json"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_streaming_chunks_arrive_in_order_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="mock-chat",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.startswith("According to [1]: The json module")
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert len({chunk.id for chunk in chunks}) == 1


def test_stream_ends_with_done(mock_server: MockServer) -> None:
    import httpx

    body = {"model": "mock-chat", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{mock_server.base_url}/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(event.startswith("data: {") for event in events[:-1])


def test_streaming_token_rate_paces_the_words(mock_server: MockServer, client: OpenAI) -> None:
    mock_server.configure(chat_ttft="const:0ms", chat_token_rate=100)
    started = time.perf_counter()
    arrivals = []
    for chunk in client.chat.completions.create(
        model="mock-chat", messages=MESSAGES, stream=True, max_tokens=11
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 11
    assert arrivals[-1] - arrivals[0] >= 10 * 0.01 * 0.9  # ten pauses of 1/100 s between eleven words


async def test_async_client_chat_embeddings_and_stream(async_client: AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(model="mock-chat", messages=MESSAGES)
    assert (completion.choices[0].message.content or "").startswith("According to [1]:")
    embedding = await async_client.embeddings.create(model="mock-embed", input="hello")
    assert len(embedding.data[0].embedding) == 256
    stream = await async_client.chat.completions.create(model="mock-chat", messages=MESSAGES, stream=True)
    words = [
        chunk.choices[0].delta.content
        async for chunk in stream
        if chunk.choices and chunk.choices[0].delta.content
    ]
    assert "".join(words) == completion.choices[0].message.content


CONCURRENT_CALLS = 100
CALL_LATENCY_S = 2.0  # long beside the time to send 100 calls, even on a slow or busy machine


async def test_a_hundred_concurrent_calls_overlap(mock_server: MockServer) -> None:
    """The mock serves calls at once, not one after another, and still gives each its full latency.

    Read from the mock's own high-water mark of calls in flight and from the total time against the serial
    time (100 × 2 s), not from a tight wall-clock bound: on a slow or busy machine sending the calls takes
    longer, but they still overlap. A mock that blocked its event loop would show 1 call in flight; one that
    queued calls behind a lock would take the serial time."""
    mock_server.configure(chat_latency=f"const:{CALL_LATENCY_S:g}s")
    timeout = 60.0  # the SDK's 5 s connect timeout is not what this test is about
    async with AsyncOpenAI(
        base_url=mock_server.base_url, api_key="mock-key", max_retries=0, timeout=timeout
    ) as client:
        await client.models.list()  # connection set-up outside the timed part
        mock_server.reset_stats()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                client.chat.completions.create(model="mock-chat", messages=MESSAGES)
                for _ in range(CONCURRENT_CALLS)
            )
        )
        elapsed = time.perf_counter() - started
    chat = mock_server.stats()["endpoints"]["/v1/chat/completions"]
    assert len(results) == CONCURRENT_CALLS and chat["requests"] == CONCURRENT_CALLS
    assert chat["max_in_flight"] >= CONCURRENT_CALLS / 2  # measured: 100, with both cores kept busy
    assert CALL_LATENCY_S <= elapsed < CONCURRENT_CALLS * CALL_LATENCY_S / 4  # overlapped, never early
