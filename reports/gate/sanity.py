"""The physics of the gate's cells, kept as information, and the few wide bounds that fail on any machine.

A/B decides regressions (reports/gate/compare.py). These figures say whether the system behaves like the
model at all: queued throughput against W / S, the overhead at one user against S, the mock's lateness
against its configured latency, requests that failed. They are printed for both sides and stored in the
gate folder. `benchmarks/sanity.toml` bounds some of them, each bound wide enough to hold on any 2-core
machine of the kind the project runs on, idle or busy (it says why): a tight bound in disguise of a ratio
would again make the verdict depend on the machine.
"""

from __future__ import annotations

import statistics
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reports.gate.measures import SideRound

MOCK_LATENCY_BENCHMARK = "test_mock_chat_at_configured_latency"


class SanityError(ValueError):
    """The bounds file cannot be read; the message names the file and the entry."""


class Bound(BaseModel):
    """`min` (must be at least) or `max` (must be at most), and what a miss means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_bound(self) -> Bound:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of `min` or `max`")
        return self

    def holds(self, value: float) -> bool:
        return value >= self.min if self.min is not None else value <= (self.max or 0.0)

    def label(self) -> str:
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


def load_bounds(path: Path) -> dict[str, Bound]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SanityError(f"{path}: {exc}") from exc
    bounds = {}
    for name, table in raw.items():
        try:
            bounds[name] = Bound.model_validate(table)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise SanityError(f"{path}: [{name}] {error['msg']}") from exc
    return bounds


@dataclass(frozen=True)
class Figure:
    """One physical figure of one side: the median over its rounds, and what it came from."""

    name: str
    subject: str  # the cell it was measured in, or what else
    value: float
    detail: str


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def figures(rounds: Sequence[SideRound]) -> list[Figure]:
    """Physics of one side over its rounds (medians: one odd round does not move them)."""
    if not rounds:
        return []
    out: list[Figure] = []
    for facts in rounds[0].cells:
        same = [c for r in rounds for c in r.cells if c.key == facts.key]
        service = facts.service_ms
        if facts.users == 1:
            overhead = _median([c.overhead_ms for c in same])
            name = f"{facts.architecture}_overhead_vs_service"
            detail = f"p50 − S = {overhead:.1f} ms, S = {service:g} ms"
            out.append(Figure(name, facts.key, overhead / service, detail))
        else:
            rps = _median([c.throughput_rps for c in same])
            name = f"{facts.architecture}_throughput_vs_capacity"
            detail = f"{rps:.2f} req/s of W/S = {facts.capacity_rps:.2f}"
            out.append(Figure(name, facts.key, rps / facts.capacity_rps, detail))
    requests = sum(c.requests for r in rounds for c in r.cells)
    failed = sum(c.failed for r in rounds for c in r.cells)
    detail = f"{failed} of {requests} requests timed out or failed"
    out.append(Figure("failed_share", "all cells", failed / max(requests, 1), detail))
    mock = [r.micro_ms[MOCK_LATENCY_BENCHMARK] for r in rounds if MOCK_LATENCY_BENCHMARK in r.micro_ms]
    if mock and "configured" in mock[0]:
        configured = mock[0]["configured"]
        late = _median([m["median"] for m in mock]) - configured
        detail = f"median call {late:+.2f} ms over the configured {configured:g} ms"
        out.append(Figure("mock_added_latency_vs_configured", "mock", late / configured, detail))
    return out


@dataclass(frozen=True)
class Check:
    name: str
    bound: Bound
    figure: Figure | None  # None: the bound's figure was not measured (that fails: a skipped check cannot)

    @property
    def failed(self) -> bool:
        return self.figure is None or not self.bound.holds(self.figure.value)


def check(figures_b: Sequence[Figure], bounds: Mapping[str, Bound]) -> list[Check]:
    """Every bound against the change's figures; a figure with the same name in several cells: each one."""
    checks = []
    for name, bound in bounds.items():
        matching = [f for f in figures_b if f.name == name]
        checks += [Check(name, bound, f) for f in matching] or [Check(name, bound, None)]
    return checks
