"""Chat completions, OpenAI-shaped: request validation, the answer built from the prompt, the response bodies.

The answer quotes the first context passage of the RAG prompt (docs/architecture.md, "The prompt"): it finds
the line starting with "[1] ", strips "(source: …) " and answers "According to [1]: <first sentence(s)>", cut
to `max_tokens` words. Without a "[1] " line it answers from the question. Tokens are whitespace-separated
words. With `ignore_eos` (vLLM's extension) the answer runs on, repeating itself, to exactly `max_tokens`, as
a benchmark asks for. `stream_options.continuous_usage_stats` (also vLLM's) puts the usage so far in every
chunk; like vLLM, only together with `include_usage`.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from typing import Any

from mocks.asgi import dumps, invalid
from mocks.models import check_model

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MIN_QUOTE_WORDS = (
    12  # a first sentence shorter than this is followed by the next one, so answers say something
)
MAX_ANSWER_WORDS = 4096  # without max_tokens; far above any answer the mock composes
_SOURCE_PREFIX = re.compile(r"^\(source:[^)]*\)\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ChatCall:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    stream: bool
    include_usage: bool
    prompt_tokens: int
    ignore_eos: bool = False
    continuous_usage: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    words: list[str]
    finish_reason: str  # "stop", or "length" when cut to (or run on to) max_tokens


def _text_of(content: Any, index: int) -> str:
    """A message's text: a string, a list of content parts (text parts are read, others skipped), or null."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise invalid(
                    f"messages[{index}].content parts must be objects with a 'type'",
                    f"messages[{index}].content",
                )
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise invalid(
                        f"messages[{index}].content text part needs a string 'text'",
                        f"messages[{index}].content",
                    )
                texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(
        f"messages[{index}].content must be a string, an array of content parts or null",
        f"messages[{index}].content",
    )


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(
                f"'{key}' must be an integer of at least 1, got {value!r}", key, "integer_below_min_value"
            )
        return value
    return MAX_ANSWER_WORDS


def _flag(body: dict[str, Any], key: str, where: str = "") -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        name = f"{where}{key}"
        raise invalid(f"'{name}' must be a boolean, got {value!r}", name, "invalid_type")
    return value


def parse_chat_request(body: dict[str, Any], models: tuple[str, ...] = ()) -> ChatCall:
    """A validated call; `models`: the names accepted (empty: any)."""
    model = check_model(body.get("model"), models)
    messages = body.get("messages")
    if messages is None:
        raise invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array of message objects.", "messages", "invalid_type")
    prompt_tokens = 0
    texts: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages[{index}] must be an object", f"messages[{index}]", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(
                f"messages[{index}].role must be one of {sorted(ROLES)}, got {role!r}",
                f"messages[{index}].role",
            )
        text = _text_of(message.get("content"), index)
        prompt_tokens += len(text.split())
        texts.append({"role": role, "content": text})
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise invalid("'stream_options' must be an object", "stream_options", "invalid_type")
    include_usage = _flag(options, "include_usage", "stream_options.")
    return ChatCall(
        model=model,
        messages=texts,
        max_tokens=_max_tokens(body),
        stream=_flag(body, "stream"),
        include_usage=include_usage,
        prompt_tokens=prompt_tokens,
        ignore_eos=_flag(body, "ignore_eos"),
        continuous_usage=include_usage and _flag(options, "continuous_usage_stats", "stream_options."),
    )


def _first_passage(prompt: str) -> str | None:
    for line in prompt.splitlines():
        if line.startswith("[1] "):
            return _SOURCE_PREFIX.sub("", line[4:].strip())
    return None


def _question(prompt: str) -> str:
    for line in prompt.splitlines():
        if line.startswith("Question:"):
            return line.removeprefix("Question:").strip()
    return prompt.strip()


def compose_answer(call: ChatCall) -> Answer:
    """The answer to `call`: cut to `max_tokens`, or with `ignore_eos` run on to exactly `max_tokens`."""
    words = _answer_words(call.messages)
    if call.ignore_eos and len(words) < call.max_tokens:
        repeats = -(-call.max_tokens // len(words))
        return Answer((words * repeats)[: call.max_tokens], "length")
    if len(words) > call.max_tokens:
        return Answer(words[: call.max_tokens], "length")
    return Answer(words, "stop")


def _answer_words(messages: list[dict[str, Any]]) -> list[str]:
    users = [message["content"] for message in messages if message["role"] == "user"]
    prompt = users[-1] if users else messages[-1]["content"]
    passage = _first_passage(prompt)
    if passage:
        sentences = _SENTENCE_END.split(passage)
        quote: list[str] = []
        for sentence in sentences:
            quote.extend(sentence.split())
            if len(quote) >= MIN_QUOTE_WORDS:
                break
        words = ["According", "to", "[1]:", *quote]
    else:
        question = " ".join(_question(prompt).split()).rstrip(".?! ") or "nothing"
        words = f"You asked: {question}. The mock has no context to answer from.".split()
    return words


def _usage(call: ChatCall, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": call.prompt_tokens + completion_tokens,
    }


def completion_body(call: ChatCall, answer: Answer) -> dict[str, Any]:
    words = answer.words
    return {
        "id": f"chatcmpl-mock{next(_ids):012x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": "fp_mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": _usage(call, len(words)),
    }


def stream_events(call: ChatCall, answer: Answer) -> list[bytes]:
    """SSE events of a streamed answer: a role chunk, one chunk per word (event i carries word i, i >= 1),
    the finish chunk, usage, [DONE]."""
    words = answer.words
    head: dict[str, Any] = {
        "id": f"chatcmpl-mock{next(_ids):012x}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": "fp_mock",
    }
    if call.include_usage:
        head["usage"] = (
            None  # the real API sends "usage": null on every chunk but the last when asked for usage
        )

    def chunk(delta: dict[str, Any], finish: str | None = None, produced: int = 0) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if call.continuous_usage:
            return b"data: " + dumps({**head, "choices": [choice], "usage": _usage(call, produced)}) + b"\n\n"
        return b"data: " + dumps({**head, "choices": [choice]}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events.extend(
        chunk({"content": word if i == 0 else " " + word}, produced=i + 1) for i, word in enumerate(words)
    )
    events.append(chunk({}, answer.finish_reason, len(words)))
    if call.include_usage:
        events.append(b"data: " + dumps({**head, "choices": [], "usage": _usage(call, len(words))}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events
