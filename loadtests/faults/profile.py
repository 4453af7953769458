"""Fault profiles: TOML files of `[[scenario]]` tables, validated, for `ragload bench --profile faults`.

A fault profile says `kind = "faults"`, has a `[mock]` table (the latency model and the Retry-After the mock
sends) and one `[[scenario]]` per fault run: the queue engine (`engine = "rq"` by default, or `"saq"` with
its `concurrency` per worker process), the workers (or autoscaling bounds), the offered load as steps of
Poisson arrivals, when to stop submitting (`jobs` accepted or `duration_s`), the fault events on the timeline
and how long the drain may take. Event windows with `to_s` unset last until the load ends: the drain runs
without faults, so that every accepted job can reach an end. Format of the resolved scenario:
docs/architecture.md, "A fault run folder".
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loadtests.sweep.profile import ProfileError, resolve_path
from mocks.latency import LatencySpec

FAULT_KIND = "faults"
DEFAULT_DRAIN_LIMIT_S = 180.0  # a killed worker's job is retried ≈ 10-20 s later; LLM retries wait ≤ 22 s


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadStep(_Strict):
    at_s: float = Field(ge=0)
    rate: float = Field(gt=0, le=2000, description="submits per second (Poisson arrivals) from at_s on")


class KillWorker(_Strict):
    kind: Literal["kill_worker"]
    every_s: float = Field(gt=0)
    from_s: float = Field(default=0.0, ge=0)
    to_s: float | None = Field(default=None, gt=0)


class LlmErrors(_Strict):
    kind: Literal["llm_errors"]
    rate: float = Field(gt=0, le=1, description="fraction of LLM calls answered 500/503")
    from_s: float = Field(default=0.0, ge=0)
    to_s: float | None = Field(default=None, gt=0)


class LlmOutage(_Strict):
    kind: Literal["llm_outage"]
    from_s: float = Field(ge=0)
    to_s: float = Field(gt=0)


class BrokerRestart(_Strict):
    kind: Literal["broker_restart"]
    at_s: float = Field(ge=0)
    down_s: float = Field(gt=0, le=120)
    # SIGTERM: a clean shutdown (the AOF flushed and fsynced); SIGKILL: a crash (nothing flushed at the end).
    signal: Literal["SIGTERM", "SIGKILL"] = "SIGTERM"


FaultEvent = Annotated[KillWorker | LlmErrors | LlmOutage | BrokerRestart, Field(discriminator="kind")]


class MockSettings(_Strict):
    """The mock's live config at the start of every scenario (a scenario may override the latencies)."""

    chat_latency: str = "const:20ms"
    embed_latency: str = "const:2ms"
    # Seconds the mock asks for in Retry-After on its 503s; the openai SDK waits that long before its retry.
    retry_after: float = Field(default=0.1, ge=0, le=60)

    @field_validator("chat_latency", "embed_latency")
    @classmethod
    def _parses(cls, value: str) -> str:
        LatencySpec.parse(value)
        return value

    def live_config(self) -> dict[str, Any]:
        return self.model_dump()


class StackSettings(_Strict):
    """The queued system's settings for the fault runs (the stack's environment)."""

    # The queued system's default: a killed worker's job no longer waits for the job timeout to be retried.
    job_timeout_s: int = Field(default=120, ge=1)
    # An LLM call that takes longer is a timeout (retried by the SDK, then by the job): shorter than the job.
    llm_timeout_s: float = Field(default=5.0, gt=0)


class ScenarioMock(_Strict):
    chat_latency: str | None = None
    embed_latency: str | None = None

    @field_validator("chat_latency", "embed_latency")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            LatencySpec.parse(value)
        return value


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)
    description: str = ""
    workers: int = Field(default=4, ge=1, le=32)
    # the queue engine (system/engines/); saq needs `concurrency`, its jobs in flight per worker process
    engine: Literal["rq", "saq"] = "rq"
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    autoscale: tuple[int, int] | None = None
    load: list[LoadStep] = Field(min_length=1)
    jobs: int | None = Field(default=None, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    events: list[FaultEvent] = Field(default_factory=list)
    drain_limit_s: float = Field(default=DEFAULT_DRAIN_LIMIT_S, gt=0)
    mock: ScenarioMock = ScenarioMock()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.jobs is None and self.duration_s is None:
            raise ValueError("a scenario needs `jobs` (accepted jobs to submit) or `duration_s`, or both")
        starts = [step.at_s for step in self.load]
        if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
            raise ValueError("`load` steps start at at_s = 0 and their at_s increase")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 1 <= low <= high:
                raise ValueError("`autoscale = [min, max]` needs 1 <= min <= max")
        if self.engine == "saq" and self.concurrency is None:
            raise ValueError("engine = 'saq' needs `concurrency` (jobs in flight per worker process)")
        if self.engine == "rq" and self.concurrency is not None:
            raise ValueError("`concurrency` is for engine = 'saq' (an RQ worker runs one job at a time)")
        for event in self.events:
            _check_window(event)
        if sum(isinstance(e, BrokerRestart) for e in self.events) > 1:
            raise ValueError("one broker_restart per scenario")
        return self

    @property
    def initial_workers(self) -> int:
        return self.autoscale[0] if self.autoscale else self.workers

    def resolved(self) -> dict[str, Any]:
        """The scenario as scenario.json holds it (docs/architecture.md, "A fault run folder")."""
        data = self.model_dump()
        data["autoscale"] = list(self.autoscale) if self.autoscale else None
        data["workers"] = self.initial_workers
        return data


def _check_window(event: KillWorker | LlmErrors | LlmOutage | BrokerRestart) -> None:
    if isinstance(event, BrokerRestart):
        return
    if event.to_s is not None and event.to_s <= event.from_s:
        raise ValueError(f"{event.kind}: to_s ({event.to_s}) must be after from_s ({event.from_s})")


class FaultProfile(_Strict):
    kind: Literal["faults"]
    description: str = ""
    seed: int = 7
    mock: MockSettings = MockSettings()
    stack: StackSettings = StackSettings()
    scenario: list[Scenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> FaultProfile:
        names = [s.name for s in self.scenario]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario names must be unique, got {names}")
        return self


def read_toml(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    path = resolve_path(name_or_path)
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"no profile '{name_or_path}' ({path})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None


def is_fault_profile(name_or_path: str) -> bool:
    """True if the profile file says `kind = "faults"` (False if it is missing: the sweep reports that)."""
    try:
        _, data = read_toml(name_or_path)
    except ProfileError:
        return False
    return data.get("kind") == FAULT_KIND


def parse_fault_profile(data: dict[str, Any], source: str = "<profile>") -> FaultProfile:
    try:
        return FaultProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'profile'}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"{source}: {problems}") from None


def load_fault_profile(name_or_path: str) -> FaultProfile:
    path, data = read_toml(name_or_path)
    return parse_fault_profile(data, source=str(path))
