"""The mock's live configuration: one validated model for the flags of `ragload mock` and /_mock/config.

Keys are the flag names with underscores. `GET /_mock/config` returns every key; `PUT` takes any subset, and
the merged result is validated as a whole, so a bad value changes nothing and is answered 422 with the reason.
Latency specs travel as their text form (`lognormal:400ms,0.5`), so a GET body can be PUT back unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from mocks.embeddings import DEFAULT_DIM, MAX_DIM
from mocks.latency import LatencySpec


def _to_spec(value: Any) -> LatencySpec:
    if isinstance(value, LatencySpec):
        return value
    if not isinstance(value, str):
        raise ValueError("a latency spec is a string such as 'const:200ms' or 'lognormal:400ms,0.5'")
    return LatencySpec.parse(value)


Latency = Annotated[LatencySpec, BeforeValidator(_to_spec), PlainSerializer(str, return_type=str)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

# Defaults for a person running `ragload up`: an LLM call that feels real (median 400 ms, a tail up to about
# 1.5 s) but keeps a sweep short; an embedding call of a few ms; no faults and no limits.
DEFAULT_CHAT_LATENCY = "lognormal:400ms,0.5"
DEFAULT_EMBED_LATENCY = "lognormal:15ms,0.3"


class MockConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_latency: Latency = Field(
        default=LatencySpec.parse(DEFAULT_CHAT_LATENCY),
        description="time to answer a chat completion (non-streaming: the whole answer)",
    )
    chat_ttft: Latency | None = Field(default=None, description="streaming: time to the first token")
    chat_token_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=100_000.0,
        description="streaming: tokens per second after the first (0: all at once)",
    )
    embed_latency: Latency = Field(
        default=LatencySpec.parse(DEFAULT_EMBED_LATENCY), description="time per embeddings call"
    )
    embed_dim: int = Field(
        default=DEFAULT_DIM, ge=1, le=MAX_DIM, description="dimension when `dimensions` is not given"
    )
    error_rate: Fraction = Field(default=0.0, description="fraction of calls answered 500 or 503 (half each)")
    throttle_rate: Fraction = Field(
        default=0.0, description="fraction of calls answered 429 with Retry-After"
    )
    retry_after: float = Field(
        default=1.0, ge=0.0, le=3600.0, description="seconds sent in Retry-After on a 429"
    )
    hang_rate: Fraction = Field(
        default=0.0, description="fraction of calls never answered until the client gives up"
    )
    drop_rate: Fraction = Field(
        default=0.0, description="fraction of streams cut off half-way (streaming only)"
    )
    max_concurrent: int = Field(
        default=0, ge=0, description="calls in progress at most, then 429 (0: no limit)"
    )
    rpm: int = Field(default=0, ge=0, description="requests per minute per model, then 429 (0: no limit)")
    tpm: int = Field(default=0, ge=0, description="tokens per minute per model, then 429 (0: no limit)")
    seed: int = Field(
        default=0, description="seeds latency and fault draws; PUT re-seeds, so a run can be replayed"
    )

    def fault_total(self) -> float:
        return self.error_rate + self.throttle_rate + self.hang_rate + self.drop_rate

    def updated(self, changes: dict[str, Any]) -> MockConfig:
        """A new config with `changes` applied; raises ConfigError (naming every problem) if any is wrong."""
        merged = {**self.model_dump(), **changes}
        try:
            config = MockConfig.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc)) from None
        if config.fault_total() > 1.0:
            raise ConfigError("error_rate + throttle_rate + hang_rate + drop_rate must not exceed 1")
        return config


class ConfigError(ValueError):
    """A live-config change that was refused; the message says what is wrong."""


def describe_errors(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key (known: {', '.join(MockConfig.model_fields)})"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
