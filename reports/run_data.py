"""Loading a run folder (docs/architecture.md, "A run folder") into plain typed records.

Tolerant by design: a report must build from whatever a run left behind, so missing optional columns,
empty values, cells without server samples and a missing config/meta file become None, never an error.
Only a missing `summary.csv` is fatal: it is the table everything else is computed from.

summary.csv has one row per trial; `load_run` groups the trials of each cell (column `cell`; a folder from
before trials existed has one trial per cell) into one CellSummary whose figures are the trials' means and
pooled counts, with the trials kept in `trials` and the intervals in `stats` (reports/cell_stats.py). Each
trial's samples.csv, when present, gives the per-request latencies behind the percentile intervals.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from reports.cell_stats import CellStats, TrialFigures, cell_stats
from reports.legacy_service_time import service_model_from_specs
from reports.queueing import ServiceModel

TRUE_WORDS = frozenset({"true", "1", "yes"})
GENERATOR_SATURATED_PCT = 80.0  # a generator process above this share of one core delays its own requests


class RunFolderError(ValueError):
    """A folder that is not a run folder; the message says what is missing."""


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _flag(text: str | None) -> bool | None:
    if text is None or text.strip() == "":
        return None
    return text.strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class CellSummary:
    """One row of summary.csv. Counts are ints, measurements floats, absent values None."""

    cell_id: str
    architecture: str
    mode: str
    load: str  # "closed" | "open"
    workers: int | None
    users: int | None
    rate: float | None
    requests: int
    timeouts: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    throughput_rps: float | None
    ideal_rps: float | None
    submit_p99_ms: float | None
    probe_p99_ms: float | None
    generator_cpu_pct: float | None
    generator_saturated: bool
    extra: Mapping[str, str] = field(default_factory=dict)
    trial_id: str = ""  # the trial's folder under cells/ (a trial row); "" for an aggregate
    trial: int = 1
    seed: int | None = None
    trials: tuple[CellSummary, ...] = ()  # an aggregate's trials; () for a trial row
    latencies_ms: tuple[float, ...] | None = None  # a trial's counted e2e latencies, from its samples.csv
    upstream_note: str = ""  # the upstream's name when the run has several and this is not the main one

    @property
    def runs(self) -> tuple[CellSummary, ...]:
        """The trials behind this cell (a lone row is its own trial)."""
        return self.trials or (self,)

    @cached_property
    def stats(self) -> CellStats:
        """The cell's figures with their 95 % intervals."""
        return cell_stats([_figures(trial) for trial in self.runs])

    @property
    def testbed_limit(self) -> str:
        """Why the machine, not the architecture, may have set this cell's figures ("" when it did not):
        the reasons of every trial that was testbed-limited."""
        reasons = [t.extra.get("testbed_limited", "").strip() for t in self.runs]
        found = [r for r in reasons if r]
        if not found:
            return ""
        return (
            found[0] if len(found) == len(reasons) else f"{len(found)} of {len(reasons)} trials: {found[0]}"
        )

    @property
    def load_value(self) -> float | None:
        """The x of every "vs load" plot: users (closed loop) or arrival rate (open loop)."""
        return float(self.users) if self.load == "closed" and self.users is not None else self.rate

    @property
    def timeout_rate(self) -> float | None:
        return self.timeouts / self.requests if self.requests else None

    @property
    def throughput_ratio(self) -> float | None:
        if self.throughput_rps is None or not self.ideal_rps:
            return None
        return self.throughput_rps / self.ideal_rps

    def number(self, column: str) -> float | None:
        """An optional column (e.g. mean_ms, concurrency, service_time_ms), None when absent."""
        return _number(self.extra.get(column))

    @property
    def upstream(self) -> str:
        """The upstream profile the cell ran against ("": the mock's own flags, or an older folder)."""
        return self.extra.get("upstream", "").strip()

    @property
    def burst(self) -> bool:
        return bool(_flag(self.extra.get("burst")))

    @property
    def config_label(self) -> str:
        if self.architecture == "queued":
            label = workers_text(self.workers) if self.workers is not None else "workers ?"
        else:
            processes, threads = self.number("processes"), self.number("threads")
            parts = [f"p{processes:g}"] if processes is not None else []
            if threads is not None:
                parts.append(f"t{threads:g}")
            label = " ".join(parts)
        return label + (f" on {self.upstream_note}" if self.upstream_note else "")


SUMMARY_FIELDS = frozenset(CellSummary.__dataclass_fields__) - {
    "extra",
    "trials",
    "latencies_ms",
    "trial_id",
    "upstream_note",
}


def _figures(trial: CellSummary) -> TrialFigures:
    slo_ok = trial.number("slo_ok")
    return TrialFigures(
        throughput_rps=trial.throughput_rps,
        ideal_rps=trial.ideal_rps,
        requests=trial.requests,
        timeouts=trial.timeouts,
        slo_ok=None if slo_ok is None else int(slo_ok),
        goodput_rps=trial.number("goodput_rps"),
        offered_rps=trial.number("offered_rps"),
        percentiles={50: trial.p50_ms, 95: trial.p95_ms, 99: trial.p99_ms},
        latencies_ms=trial.latencies_ms,
    )


def _int(text: str | None) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


def parse_summary_row(row: Mapping[str, str]) -> CellSummary:
    cpu = _number(row.get("generator_cpu_pct"))
    saturated = _flag(row.get("generator_saturated"))
    if saturated is None:
        saturated = cpu is not None and cpu > GENERATOR_SATURATED_PCT
    return CellSummary(
        cell_id=(row.get("cell") or row.get("cell_id") or "").strip(),
        trial_id=row.get("cell_id", "").strip(),
        trial=_int(row.get("trial")) or 1,
        seed=_int(row.get("seed")),
        architecture=row.get("architecture", "").strip(),
        mode=row.get("mode", "").strip(),
        load=(row.get("load") or "closed").strip(),
        workers=_int(row.get("workers")),
        users=_int(row.get("users")),
        rate=_number(row.get("rate")),
        requests=_int(row.get("requests")) or 0,
        timeouts=_int(row.get("timeouts")) or 0,
        errors=_int(row.get("errors")) or 0,
        p50_ms=_number(row.get("p50_ms")),
        p95_ms=_number(row.get("p95_ms")),
        p99_ms=_number(row.get("p99_ms")),
        max_ms=_number(row.get("max_ms")),
        throughput_rps=_number(row.get("throughput_rps")),
        ideal_rps=_number(row.get("ideal_rps")),
        submit_p99_ms=_number(row.get("submit_p99_ms")),
        probe_p99_ms=_number(row.get("probe_p99_ms")),
        generator_cpu_pct=cpu,
        generator_saturated=saturated or (cpu is not None and cpu > GENERATOR_SATURATED_PCT),
        extra={key: value for key, value in row.items() if key not in SUMMARY_FIELDS and value is not None},
    )


def read_csv_numbers(path: Path) -> list[dict[str, float | None]]:
    """A numeric CSV (server.csv) as rows of floats; an absent file is no rows."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _find_key(data: Any, key: str) -> Any:
    """First value stored under `key` anywhere in nested dicts/lists (config.json's layout may nest)."""
    if isinstance(data, Mapping):
        if key in data:
            return data[key]
        children: Iterator[Any] = iter(data.values())
    elif isinstance(data, list):
        children = iter(data)
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


@dataclass
class RunData:
    run_dir: Path
    config: dict[str, Any]
    meta: dict[str, Any]
    cells: list[CellSummary]

    def cell_params(self, trial_id: str) -> dict[str, Any]:
        return _json(self.run_dir / "cells" / trial_id / "cell.json")

    def server_rows(self, trial_id: str) -> list[dict[str, float | None]]:
        """server.csv of one trial (a cell's first trial: `cell.runs[0].trial_id`)."""
        return read_csv_numbers(self.run_dir / "cells" / trial_id / "server.csv")

    @property
    def upstream_known(self) -> bool:
        """False for `--target` without a mock: the cells' upstream latency, hence their ideal, is unknown."""
        return self.config.get("upstream_known") is not False

    @property
    def slo(self) -> dict[str, float | None]:
        found = self.config.get("slo")
        return dict(found) if isinstance(found, dict) else {}

    @property
    def deadline_s(self) -> float | None:
        value = _find_key(self.config, "deadline_s")
        if value is None and self.cells:
            value = self.cells[0].number("deadline_s")
        return float(value) if isinstance(value, int | float) else None

    @property
    def profile_name(self) -> str:
        for source in (self.meta, self.config):
            value = source.get("profile") or source.get("profile_name") or source.get("name")
            if isinstance(value, str):
                return value
        return "unknown"

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic"))

    def service_model(self) -> ServiceModel | None:
        """From config.json's `service_time_model.per_request` (mean and CV², written by the harness); in an
        older folder, from the mock's latency specs (reports/legacy_service_time.py); else the mean service
        time, treated as constant. None when the upstream is not known (`--target` without a mock)."""
        if not self.upstream_known:
            return None
        recorded = self.config.get("service_time_model")
        per_request = recorded.get("per_request") if isinstance(recorded, Mapping) else None
        if isinstance(per_request, Mapping):
            try:
                return ServiceModel(
                    mean_s=float(per_request["mean_s"]),
                    cv2=float(per_request["cv2"]),
                    source=str(per_request["model"]),
                )
            except (KeyError, TypeError, ValueError):
                pass
        chat, embed = _find_key(self.config, "chat_latency"), _find_key(self.config, "embed_latency")
        specs = [spec for spec in (embed, chat) if isinstance(spec, str)]
        if specs:
            try:
                return service_model_from_specs(specs)
            except ValueError:
                pass
        service_ms = _find_key(self.config, "service_time_ms")
        if not isinstance(service_ms, int | float) and self.cells:
            service_ms = self.cells[0].number("service_time_ms")
        if isinstance(service_ms, int | float) and service_ms > 0:
            return ServiceModel(
                mean_s=service_ms / 1000, cv2=0.0, source=f"mean {service_ms:g} ms (CV unknown)"
            )
        return None


def read_latencies(path: Path, deadline_s: float | None) -> tuple[float, ...] | None:
    """A trial's end-to-end latencies as counted (a timeout = the deadline); None without samples.csv."""
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("kind") == "e2e"]
    values = []
    for row in rows:
        latency = _number(row.get("latency_ms"))
        if row.get("outcome") == "timeout" and deadline_s:
            latency = deadline_s * 1000
        if latency is not None:
            values.append(latency)
    return tuple(values)


def _mean_text(values: Sequence[str]) -> str:
    """The mean of numeric texts (e.g. offered_rps over trials), or the first text when not all numbers."""
    numbers = [_number(v) for v in values]
    if not numbers or any(n is None for n in numbers):
        return values[0] if values else ""
    return f"{sum(n for n in numbers if n is not None) / len(numbers):g}"


def aggregate(trials: Sequence[CellSummary]) -> CellSummary:
    """One cell from its trials: means of per-trial rates, sums of counts, percentiles pooled over the
    requests (from the stats, which fall back to the trials' own figures without samples); the optional
    columns in `extra` are the trials' means (numbers) or the first trial's (text)."""
    first = trials[0]
    if len(trials) == 1 and first.latencies_ms is None:
        return first
    stats = cell_stats([_figures(t) for t in trials])
    keys = dict.fromkeys(k for t in trials for k in t.extra)
    extra = {key: _mean_text([t.extra[key] for t in trials if key in t.extra]) for key in keys}
    extra["testbed_limited"] = "; ".join(
        dict.fromkeys(t.extra.get("testbed_limited", "") for t in trials if t.extra.get("testbed_limited"))
    )

    def estimate(p: int) -> float | None:
        found = stats.percentile(p)
        return None if found is None else found.estimate

    cpu = [t.generator_cpu_pct for t in trials if t.generator_cpu_pct is not None]
    return replace(
        first,
        trial_id="",
        trial=0,
        seed=None,
        requests=sum(t.requests for t in trials),
        timeouts=sum(t.timeouts for t in trials),
        errors=sum(t.errors for t in trials),
        p50_ms=estimate(50),
        p95_ms=estimate(95),
        p99_ms=estimate(99),
        max_ms=max((t.max_ms for t in trials if t.max_ms is not None), default=None),
        throughput_rps=None if stats.throughput is None else stats.throughput.estimate,
        ideal_rps=_mean_of([t.ideal_rps for t in trials]),
        submit_p99_ms=max((t.submit_p99_ms for t in trials if t.submit_p99_ms is not None), default=None),
        probe_p99_ms=max((t.probe_p99_ms for t in trials if t.probe_p99_ms is not None), default=None),
        generator_cpu_pct=max(cpu) if cpu else None,
        generator_saturated=any(t.generator_saturated for t in trials),
        extra=extra,
        trials=tuple(trials),
        latencies_ms=None,
    )


def _mean_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def load_run(run_dir: Path) -> RunData:
    summary_path = run_dir / "summary.csv"
    if not summary_path.is_file():
        raise RunFolderError(f"{run_dir}: no summary.csv (is this a run folder written by `ragload bench`?)")
    with summary_path.open(newline="", encoding="utf-8") as handle:
        rows = [parse_summary_row(row) for row in csv.DictReader(handle)]
    by_cell: dict[str, list[CellSummary]] = defaultdict(list)
    for row in rows:
        folder = run_dir / "cells" / row.trial_id / "samples.csv"
        by_cell[row.cell_id].append(
            replace(row, latencies_ms=read_latencies(folder, row.number("deadline_s")))
        )
    cells = [aggregate(sorted(trials, key=lambda t: t.trial)) for _, trials in sorted(by_cell.items())]
    cells = _note_upstreams(cells)
    return RunData(
        run_dir=run_dir,
        config=_json(run_dir / "config.json"),
        meta=_json(run_dir / "meta.json"),
        cells=cells,
    )


def _note_upstreams(cells: list[CellSummary]) -> list[CellSummary]:
    """In a run on several upstreams, name the upstream in the labels of the cells not on the main one (the
    one most cells ran against), so that plots and tables keep them apart."""
    counts: dict[str, int] = defaultdict(int)
    for cell in cells:
        counts[cell.upstream] += 1
    if len(counts) < 2:
        return cells
    main = max(counts, key=lambda name: counts[name])
    return [replace(c, upstream_note=c.upstream) if c.upstream != main else c for c in cells]


def workers_text(count: int | None) -> str:
    return "1 worker" if count == 1 else f"{count} workers"
