"""The mock's live configuration: one validated model for the flags of `ragload mock` and /_mock/config.

Keys are the flag names with underscores. `GET /_mock/config` returns every key; `PUT` takes any subset, and
the merged result is validated as a whole, so a bad value changes nothing and is answered 422 with the reason.
Latency specs and durations travel as their text form (`lognormal:400ms,0.5`, `10ms`), so a GET body can be
PUT back unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from mocks.capacity import BatchModel
from mocks.embeddings import DEFAULT_DIM, MAX_DIM
from mocks.latency import LatencySpec, format_duration, parse_duration


def _to_spec(value: Any) -> LatencySpec:
    if isinstance(value, LatencySpec):
        return value
    if not isinstance(value, str):
        raise ValueError("a latency spec is a string such as 'const:200ms' or 'lognormal:400ms,0.5'")
    return LatencySpec.parse(value)


def _to_seconds(value: Any) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool) and value == 0:
        return 0.0
    if not isinstance(value, str):
        raise ValueError("a duration is a string with a unit, such as '10ms' or '50us'")
    return parse_duration(value)


def _to_models(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) and item for item in value):
        raise ValueError("models is a list of model names (or one comma-separated string)")
    return tuple(value)


Latency = Annotated[LatencySpec, BeforeValidator(_to_spec), PlainSerializer(str, return_type=str)]
Duration = Annotated[
    float, BeforeValidator(_to_seconds), PlainSerializer(format_duration, return_type=str), Field(ge=0.0)
]
Models = Annotated[tuple[str, ...], BeforeValidator(_to_models), PlainSerializer(list, return_type=list)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

# Defaults for a person running `ragload up`: an LLM call that feels real (median 400 ms, a tail up to about
# 1.5 s) but keeps a sweep short; an embedding call of a few ms; no faults and no limits.
DEFAULT_CHAT_LATENCY = "lognormal:400ms,0.5"
DEFAULT_EMBED_LATENCY = "lognormal:15ms,0.3"


class MockConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_latency: Latency = Field(
        default=LatencySpec.parse(DEFAULT_CHAT_LATENCY),
        description="unbounded: time to answer a chat completion (non-streaming: the whole answer); "
        "batch: time a call spends before it reaches the engine (network, gateway)",
    )
    chat_ttft: Latency | None = Field(
        default=None, description="unbounded, streaming: time to the first token"
    )
    chat_token_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=100_000.0,
        description="unbounded, streaming: tokens per second after the first (0: all at once)",
    )
    capacity: Literal["unbounded", "batch"] = Field(
        default="unbounded",
        description="chat capacity model: 'unbounded' (every call its own latency draw, any number at once) "
        "or 'batch' (a continuous-batching engine, below)",
    )
    max_batch: int = Field(default=16, ge=1, le=100_000, description="batch: calls decoding at once")
    step_base: Duration = Field(default=0.010, description="batch: fixed time of one engine step")
    step_per_seq: Duration = Field(default=0.0005, description="batch: step time added per running call")
    prefill_per_token: Duration = Field(
        default=0.00005, description="batch: step time added per prompt token admitted in that step"
    )
    thrash: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description="batch: every max_batch calls waiting lengthen each step by this fraction (0: never)",
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
    models: Models = Field(
        default=(),
        description="model names accepted, comma-separated; any other gets 404 (empty: any name)",
    )
    seed: int = Field(
        default=0,
        description="seeds the per-request latency and fault draws; PUT re-seeds, so a run can be replayed",
    )

    def fault_total(self) -> float:
        return self.error_rate + self.throttle_rate + self.hang_rate + self.drop_rate

    def batch_model(self) -> BatchModel:
        return BatchModel(
            self.max_batch, self.step_base, self.step_per_seq, self.prefill_per_token, self.thrash
        )

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
