"""Loading a run folder (docs/architecture.md, "A run folder") into plain typed records.

Tolerant by design: a report must build from whatever a run left behind, so missing optional columns,
empty values, cells without server samples and a missing config/meta file become None, never an error.
Only a missing `summary.csv` is fatal: it is the table everything else is computed from.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    def config_label(self) -> str:
        if self.architecture == "queued":
            return workers_text(self.workers) if self.workers is not None else "workers ?"
        processes, threads = self.number("processes"), self.number("threads")
        parts = [f"p{processes:g}"] if processes is not None else []
        if threads is not None:
            parts.append(f"t{threads:g}")
        return " ".join(parts)


SUMMARY_FIELDS = frozenset(CellSummary.__dataclass_fields__) - {"extra"}


def _int(text: str | None) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


def parse_summary_row(row: Mapping[str, str]) -> CellSummary:
    cpu = _number(row.get("generator_cpu_pct"))
    saturated = _flag(row.get("generator_saturated"))
    if saturated is None:
        saturated = cpu is not None and cpu > GENERATOR_SATURATED_PCT
    return CellSummary(
        cell_id=row.get("cell_id", ""),
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

    def cell_params(self, cell_id: str) -> dict[str, Any]:
        return _json(self.run_dir / "cells" / cell_id / "cell.json")

    def server_rows(self, cell_id: str) -> list[dict[str, float | None]]:
        return read_csv_numbers(self.run_dir / "cells" / cell_id / "server.csv")

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
        time, treated as constant."""
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


def load_run(run_dir: Path) -> RunData:
    summary_path = run_dir / "summary.csv"
    if not summary_path.is_file():
        raise RunFolderError(f"{run_dir}: no summary.csv (is this a run folder written by `ragload bench`?)")
    with summary_path.open(newline="", encoding="utf-8") as handle:
        cells = [parse_summary_row(row) for row in csv.DictReader(handle)]
    return RunData(
        run_dir=run_dir,
        config=_json(run_dir / "config.json"),
        meta=_json(run_dir / "meta.json"),
        cells=cells,
    )


def workers_text(count: int | None) -> str:
    return "1 worker" if count == 1 else f"{count} workers"
