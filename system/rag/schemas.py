"""The request and RESULT schemas shared by the queued API and the baseline (docs/architecture.md, "HTTP
contracts")."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

MAX_QUERY_CHARS = 4000  # longer questions are rejected (413/422) rather than sent to the LLM
MAX_TOP_K = 20


def _not_blank(query: str) -> str:
    """After stripping: pydantic's own min_length message ("at least 1 character") would puzzle a client
    that sent several (whitespace) characters. Same error type and context, a message that says why."""
    if not query:
        raise PydanticCustomError(
            "string_too_short",
            "Query should have at least {min_length} non-whitespace character",
            {"min_length": 1},
        )
    return query


class ChatRequest(BaseModel):
    """Body of `POST /chat` on both architectures."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=MAX_QUERY_CHARS),
        AfterValidator(_not_blank),
        Field(json_schema_extra={"minLength": 1}),
    ]
    top_k: int = Field(default=4, ge=1, le=MAX_TOP_K)


class Source(BaseModel):
    id: str
    text: str
    score: float


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Timings(BaseModel):
    """Milliseconds spent in each pipeline stage."""

    embed: float
    retrieve: float
    llm: float
    total: float


class RagResult(BaseModel):
    """RESULT: one schema for both architectures."""

    answer: str
    sources: list[Source]
    usage: Usage
    timings_ms: Timings
