"""Chat completions, OpenAI-shaped: request validation, the answer built from the prompt, the response bodies.

The answer quotes the first context passage of the RAG prompt (docs/architecture.md, "The prompt"): it finds
the line starting with "[1] ", strips "(source: …) " and answers "According to [1]: <first sentence(s)>", cut
to `max_tokens` words. Without a "[1] " line it answers from the question. Tokens are whitespace-separated
words.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from typing import Any

from mocks.asgi import ApiError, dumps, invalid

CHAT_MODELS = ("mock-chat",)
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


def parse_chat_request(body: dict[str, Any]) -> ChatCall:
    model = check_chat_model(body.get("model"))
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
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise invalid(f"'stream' must be a boolean, got {stream!r}", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise invalid("'stream_options' must be an object", "stream_options", "invalid_type")
    return ChatCall(
        model=model,
        messages=texts,
        max_tokens=_max_tokens(body),
        stream=bool(stream),
        include_usage=bool(options.get("include_usage", False)),
        prompt_tokens=prompt_tokens,
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


def compose_answer(messages: list[dict[str, Any]], max_tokens: int) -> tuple[list[str], str]:
    """The answer's words and the finish reason ("stop", or "length" when cut to `max_tokens`)."""
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
    if len(words) > max_tokens:
        return words[:max_tokens], "length"
    return words, "stop"


def _usage(call: ChatCall, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": call.prompt_tokens + completion_tokens,
    }


def completion_body(call: ChatCall) -> dict[str, Any]:
    words, finish_reason = compose_answer(call.messages, call.max_tokens)
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
                "finish_reason": finish_reason,
            }
        ],
        "usage": _usage(call, len(words)),
    }


def stream_events(call: ChatCall) -> list[bytes]:
    """SSE events of a streamed answer: a role chunk, one chunk per word, the finish chunk, usage, [DONE]."""
    words, finish_reason = compose_answer(call.messages, call.max_tokens)
    head = {
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

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + dumps({**head, "choices": [choice]}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events.extend(chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words))
    events.append(chunk({}, finish_reason))
    if call.include_usage:
        events.append(b"data: " + dumps({**head, "choices": [], "usage": _usage(call, len(words))}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def check_chat_model(model: Any) -> str:
    """The model name, or the 4xx the API answers for a missing, mistyped or unknown one."""
    if model is None:
        raise invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise invalid(f"'model' must be a string, got {model!r}", "model", "invalid_type")
    if model not in CHAT_MODELS:
        raise ApiError(
            404,
            f"The model '{model}' does not exist (chat models: {', '.join(CHAT_MODELS)}).",
            "invalid_request_error",
            "model_not_found",
            "model",
        )
    return model
