"""Loading a fault run folder (docs/architecture.md, "A fault run folder") into typed records.

A fault run is `meta.json` (with `"kind": "faults"`), `config.json` and one folder per scenario under
`faults/`. The JSON files are validated with pydantic; the CSVs row by row, an empty cell being None ("not
sampled": the broker was down). A scenario whose files are missing or malformed still loads: what could not
be read is listed in `FaultScenario.problems`, and the report shows it instead of failing.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from reports.run_data import RunFolderError
from reports.run_data import _json as _json_object  # missing or unreadable → {}

M = TypeVar("M", bound=BaseModel)

FAULTS_KIND = "faults"
FAULTS_FOLDER = "faults"
BROKER_COLUMNS = (
    "accepted",
    "finished",
    "dead_lettered",
    "queued",
    "running",
)  # all needed for "unaccounted"
DEAD_LETTERED_STATUS = "failed"  # jobs.csv's final_status of a dead-lettered job
LOST_STATUS = "lost"
FINISHED_STATUS = "finished"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _CsvRecord(_Record):
    @model_validator(mode="before")
    @classmethod
    def _blank_is_none(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: None if value == "" else value for key, value in data.items()}
        return data


class LoadStep(_Record):
    at_s: float
    rate: float  # submits/s from at_s on


class EventSpec(_Record):
    """One entry of scenario.json's `events`; which fields are set depends on `kind`."""

    kind: str
    every_s: float | None = None
    from_s: float | None = None
    to_s: float | None = None
    rate: float | None = None
    at_s: float | None = None
    down_s: float | None = None


class ScenarioSpec(_Record):
    name: str
    description: str = ""
    engine: str = "rq"  # the queue engine; runs from before it could be chosen were all RQ
    concurrency: int | None = None  # saq: jobs in flight per worker process
    workers: int | None = None
    autoscale: tuple[int, int] | None = None
    load: list[LoadStep] = []
    jobs: int | None = None
    duration_s: float | None = None
    events: list[EventSpec] = []
    drain_limit_s: float | None = None

    def events_of(self, kind: str) -> list[EventSpec]:
        return [event for event in self.events if event.kind == kind]


class BreakerOutcome(_Record):
    opened_after_s: float | None = None  # outage start → first 'open' sample
    closed_after_s: float | None = None  # outage end → first 'closed' sample


class BrokerOutcome(_Record):
    stopped_by: str | None = None  # SIGTERM (clean shutdown) or SIGKILL (crash); older runs: SIGTERM
    down_s: float
    api_503: int
    api_503_with_retry_after: int
    recovered_after_s: float | None = None  # broker_start → first 202


class KillToRestart(_Record):
    """The jobs the SIGKILLed workers held, and SIGKILL → started again by another worker (kills.csv)."""

    kills: int
    jobs: int
    restarted: int
    dead_lettered: int = 0
    pending: int = 0  # never started again before the drain ended
    median_s: float | None = None
    min_s: float | None = None
    p90_s: float | None = None  # runs before it was written lack it
    max_s: float | None = None
    retry_median_s: float | None = None  # SIGKILL → back in the queue (RQ's cleanup, SAQ's sweep retried it)
    retry_max_s: float | None = None


class Outcome(_Record):
    accepted: int
    finished: int
    dead_lettered: int
    lost: int
    lost_job_ids: list[str] = []
    dead_letter_reasons: dict[str, int] = {}
    rejected: dict[str, int] = {}
    retried: int = 0
    drain_s: float | None = None
    max_workers: int | None = None
    min_workers: int | None = None
    breaker: BreakerOutcome | None = None
    broker: BrokerOutcome | None = None
    kill_to_restart: KillToRestart | None = None  # runs before it was measured lack it


class TimelineRow(_CsvRecord):
    t: float
    offered: float | None = None
    accepted: float | None = None
    rejected: float | None = None
    finished: float | None = None
    dead_lettered: float | None = None
    retried: float | None = None
    queued: float | None = None
    running: float | None = None
    workers: float | None = None
    breaker: str | None = None
    broker_up: bool | None = None

    @property
    def sampled(self) -> bool:
        """False while the broker was down: the runner could not read the counts."""
        return self.broker_up is not False and all(getattr(self, name) is not None for name in BROKER_COLUMNS)

    @property
    def unaccounted(self) -> float | None:
        """Accepted jobs in no known place at this instant (lost so far, or waiting for a retry backoff)."""
        if not self.sampled:
            return None
        known = sum(getattr(self, name) for name in BROKER_COLUMNS[1:])
        return float(self.accepted or 0) - known


class RunnerEvent(_CsvRecord):
    t: float
    kind: str
    detail: str | None = None


class JobRecord(_CsvRecord):
    job_id: str
    accepted_t: float | None = None
    final_status: str
    attempts: int | None = None
    error: str | None = None


@dataclass
class FaultScenario:
    name: str
    folder: Path
    spec: ScenarioSpec | None
    timeline: list[TimelineRow]
    events: list[RunnerEvent]
    jobs: list[JobRecord]
    outcome: Outcome | None
    problems: list[str] = field(default_factory=list)

    def events_of(self, kind: str) -> list[RunnerEvent]:
        return [event for event in self.events if event.kind == kind]

    @property
    def end_t(self) -> float:
        times = [row.t for row in self.timeline] + [event.t for event in self.events]
        return max(times, default=0.0)


@dataclass
class FaultRun:
    run_dir: Path
    meta: dict[str, Any]
    config: dict[str, Any]
    scenarios: list[FaultScenario]

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic"))


def is_fault_run(run_dir: Path) -> bool:
    if _json_object(run_dir / "meta.json").get("kind") == FAULTS_KIND:
        return True
    return (run_dir / FAULTS_FOLDER).is_dir() and not (run_dir / "summary.csv").is_file()


def _read_model(path: Path, model: type[M], problems: list[str]) -> M | None:
    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return None
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problems.append(f"{path.name} is not as the interface says ({exc.error_count()} errors)")
        return None


def _read_rows(path: Path, model: type[M], problems: list[str]) -> list[M]:
    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return TypeAdapter(list[model]).validate_python(rows)  # type: ignore[valid-type]
    except ValidationError as exc:
        problems.append(f"{path.name} is not as the interface says ({exc.error_count()} errors)")
        return []


def audit_mismatches(outcome: Outcome, jobs: list[JobRecord]) -> list[str]:
    """Where jobs.csv (one row per accepted job) and outcome.json tell different stories."""
    statuses = Counter(job.final_status for job in jobs)
    pairs = (
        ("accepted", outcome.accepted, len(jobs)),
        ("finished", outcome.finished, statuses[FINISHED_STATUS]),
        ("dead-lettered", outcome.dead_lettered, statuses[DEAD_LETTERED_STATUS]),
        ("lost", outcome.lost, statuses[LOST_STATUS]),
    )
    return [
        f"outcome.json says {stated:,} {what}, jobs.csv has {counted:,}"
        for what, stated, counted in pairs
        if stated != counted
    ]


def load_scenario(folder: Path) -> FaultScenario:
    problems: list[str] = []
    spec = _read_model(folder / "scenario.json", ScenarioSpec, problems)
    timeline = sorted(_read_rows(folder / "timeline.csv", TimelineRow, problems), key=lambda row: row.t)
    events = sorted(_read_rows(folder / "events.csv", RunnerEvent, problems), key=lambda event: event.t)
    jobs = _read_rows(folder / "jobs.csv", JobRecord, problems)
    outcome = _read_model(folder / "outcome.json", Outcome, problems)
    if outcome is not None and (folder / "jobs.csv").is_file():
        problems += audit_mismatches(outcome, jobs)
    return FaultScenario(
        name=spec.name if spec else folder.name,
        folder=folder,
        spec=spec,
        timeline=timeline,
        events=events,
        jobs=jobs,
        outcome=outcome,
        problems=problems,
    )


def _profile_order(config: dict[str, Any]) -> list[str]:
    scenarios = config.get("scenarios")
    if isinstance(scenarios, dict):
        return list(scenarios)
    if isinstance(scenarios, list):
        return [entry["name"] for entry in scenarios if isinstance(entry, dict) and "name" in entry]
    return []


def load_fault_run(run_dir: Path) -> FaultRun:
    faults = run_dir / FAULTS_FOLDER
    if not faults.is_dir():
        raise RunFolderError(f"{run_dir}: no {FAULTS_FOLDER}/ folder (is this a fault run folder?)")
    config = _json_object(run_dir / "config.json")
    order = _profile_order(config)
    folders = sorted(
        (path for path in faults.iterdir() if path.is_dir()),
        key=lambda path: (order.index(path.name) if path.name in order else len(order), path.name),
    )
    return FaultRun(
        run_dir=run_dir,
        meta=_json_object(run_dir / "meta.json"),
        config=config,
        scenarios=[load_scenario(folder) for folder in folders],
    )
