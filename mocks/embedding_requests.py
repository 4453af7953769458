"""The /v1/embeddings API shape: request validation and the response body (float lists or base64 float32)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from mocks.asgi import invalid
from mocks.embeddings import MAX_DIM, count_tokens, embed_text, tokens_as_text
from mocks.models import check_model

MAX_INPUTS = 2048  # the OpenAI API's limit on inputs per call
ENCODINGS = ("float", "base64")


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    model: str
    texts: list[str]
    encoding_format: str
    dimensions: int | None
    prompt_tokens: int


def _is_token_array(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _inputs(raw: Any) -> tuple[list[str], int]:
    """The texts to embed and their token count, from a string, strings, a token array or token arrays."""
    if raw is None:
        raise invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if isinstance(raw, str):
        raw = [raw]
    elif _is_token_array(raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise invalid(
            "'input' must be a non-empty string, array of strings or array of token arrays.", "input"
        )
    if len(raw) > MAX_INPUTS:
        raise invalid(f"'input' has {len(raw)} items; at most {MAX_INPUTS} per call.", "input")
    texts: list[str] = []
    tokens = 0
    for index, item in enumerate(raw):
        if isinstance(item, str) and item:
            texts.append(item)
            tokens += count_tokens(item)
        elif _is_token_array(item):
            texts.append(tokens_as_text(item))
            tokens += len(item)
        else:
            raise invalid(
                f"input[{index}] must be a non-empty string or a non-empty array of integers.", "input"
            )
    return texts, tokens


def parse_embedding_request(body: dict[str, Any], models: tuple[str, ...] = ()) -> EmbeddingCall:
    """A validated call; `models`: the names accepted (empty: any)."""
    model = check_model(body.get("model"), models)
    texts, tokens = _inputs(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise invalid(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_DIM
    ):
        raise invalid(
            f"'dimensions' must be an integer from 1 to {MAX_DIM}, got {dimensions!r}", "dimensions"
        )
    return EmbeddingCall(model, texts, encoding, dimensions, tokens)


def embeddings_body(call: EmbeddingCall, default_dim: int) -> dict[str, Any]:
    dim = call.dimensions or default_dim
    data = []
    for index, text in enumerate(call.texts):
        vector = embed_text(text, dim)
        encoded: Any = (
            base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode()
            if call.encoding_format == "base64"
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": call.prompt_tokens, "total_tokens": call.prompt_tokens},
    }
