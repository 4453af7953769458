"""What one side (A = the base, B = the change) measured in one round of the gate, read from its files.

A round of one side leaves these (written by `ragload bench-ci`, loadtests/gate/):
- `micro-cpu.json` and `micro-wall.json`: pytest-benchmark's JSON of `pytest benchmarks`, our code's hot paths
  timed in CPU seconds of the benchmark process, and the mock server timed from outside in wall time;
- a run folder of `ragload bench --profile benchmarks/gate.toml` (a few short cells on the whole stack).

Both are read here into `metric key -> value`. Only files are read, in the formats both revisions write
(pytest-benchmark's JSON; the run folder's cell.json and samples.csv), so the base revision needs no code
of this one. Cell metrics are keyed by the cell's configuration, not its index, so that a profile edit
that reorders cells still pairs them.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A fixed CPU loop, the same code on both sides: its A/B ratio should be 1, else the sides' machine differed.
CONTROL_BENCHMARK = "test_cpu_reference"
# pytest-benchmark statistic per benchmark: the fastest round (noise only ever adds time), except where the
# fastest call says nothing: the mock's timers may fire a little early, so its typical call is compared.
MICRO_STAT: Mapping[str, str] = {"test_mock_chat_at_configured_latency": "median"}
MICRO_LABELS: Mapping[str, str] = {
    "test_enqueue_and_status": "API hot path: enqueue + status read",
    "test_pipeline_inline": "pipeline at 0 ms upstream (embed, search, prompt, chat)",
    "test_job_process_query": "queued job body at 0 ms upstream",
    "test_mock_chat": "mock: one chat call at 0 ms",
    "test_mock_chat_at_configured_latency": "mock: chat call configured at 50 ms",
    "test_summary": "summary of a 5,000-sample cell",
    "test_baseline_request": "inline baseline: one POST /chat in-process",
    CONTROL_BENCHMARK: "control: fixed CPU loop (same code on both sides)",
}


class MeasureError(ValueError):
    """A round's files are missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    control: bool = False


@dataclass(frozen=True)
class CellFacts:
    """A gate cell's figures that the sanity bounds use (physics, not A/B)."""

    key: str
    architecture: str
    workers: int | None
    servers: int  # requests served at once by design: workers (queued) or threads (inline)
    users: int
    service_ms: float
    requests: int
    failed: int  # timeouts + errors
    p50_ms: float
    throughput_rps: float

    @property
    def overhead_ms(self) -> float:
        return self.p50_ms - self.service_ms

    @property
    def capacity_rps(self) -> float:
        """W / S: what `servers` requests at a time of S each can complete per second."""
        return self.servers * 1000.0 / self.service_ms


@dataclass(frozen=True)
class SideRound:
    """One side's measurements in one round."""

    values: dict[str, float]
    metrics: dict[str, Metric]
    cells: list[CellFacts]
    micro_ms: dict[str, dict[str, float]]  # benchmark -> {"min", "median"[, "configured"]}: ms


# ---- micro-benchmarks --------------------------------------------------------------------------------------


def micro_values(
    path: Path, clock: str
) -> tuple[dict[str, float], dict[str, Metric], dict[str, dict[str, float]]]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        benchmarks = report["benchmarks"]
    except (OSError, ValueError, KeyError) as exc:
        raise MeasureError(f"{path}: not a pytest-benchmark JSON ({exc})") from exc
    values: dict[str, float] = {}
    metrics: dict[str, Metric] = {}
    times: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        name = str(bench["name"])
        stat = MICRO_STAT.get(name, "min")
        times[name] = {key: float(bench["stats"][key]) * 1000 for key in ("min", "median")}
        if isinstance(configured := (bench.get("extra_info") or {}).get("configured_ms"), int | float):
            times[name]["configured"] = float(configured)
        key = f"micro:{name}"
        values[key] = times[name][stat]
        label = f"{MICRO_LABELS.get(name, name)} ({clock}, {stat})"
        metrics[key] = Metric(key, label, "ms", control=name == CONTROL_BENCHMARK)
    return values, metrics, times


# ---- the gate profile's cells ------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise MeasureError(f"{path}: {exc}") from exc


def _e2e_samples(path: Path) -> Iterator[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            yield from (row for row in csv.DictReader(handle) if row.get("kind") == "e2e")
    except OSError as exc:
        raise MeasureError(f"{path}: {exc}") from exc


def cell_key(cell: Mapping[str, Any]) -> str:
    """`queued w4 u12` / `sync threadpool t4 u1`: what the cell was, without its index in the profile."""
    if cell["architecture"] == "queued":
        return f"queued {cell['mode']} w{cell['workers']} u{cell['users']}"
    return f"sync {cell['mode']} p{cell.get('processes') or 1}t{cell.get('threads') or '-'} u{cell['users']}"


def cell_facts(cell_dir: Path) -> CellFacts:
    cell = _read_json(cell_dir / "cell.json")
    if cell.get("load") != "closed" or not cell.get("users"):
        raise MeasureError(f"{cell_dir}: the gate reads closed-loop cells only")
    samples = list(_e2e_samples(cell_dir / "samples.csv"))
    ok = [float(row["latency_ms"]) for row in samples if row["outcome"] == "ok"]
    if not ok:
        raise MeasureError(f"{cell_dir}: no request answered in the measured window")
    queued = cell["architecture"] == "queued"
    servers = int(cell["workers"] if queued else cell.get("concurrency") or cell.get("threads") or 1)
    return CellFacts(
        key=cell_key(cell),
        architecture=str(cell["architecture"]),
        workers=cell.get("workers"),
        servers=servers,
        users=int(cell["users"]),
        service_ms=float(cell["service_time_ms"]),
        requests=len(samples),
        failed=len(samples) - len(ok),
        p50_ms=statistics.median(ok),
        throughput_rps=float(cell["completed_ok_in_window"]) / float(cell["duration_s"]),
    )


def cell_metric(facts: CellFacts) -> tuple[Metric, float]:
    """One user: the machinery's latency over the configured upstream time (what the system adds);
    several users per server: completed requests per second (what the system sustains)."""
    if facts.users == 1:
        key = f"cell:{facts.key}:overhead"
        # A floor of 0.1 ms keeps the ratio defined should a mock's timer ever fire early at the median.
        return Metric(key, f"{facts.key}: p50 − S", "ms"), max(0.1, facts.overhead_ms)
    key = f"cell:{facts.key}:throughput"
    return Metric(key, f"{facts.key}: throughput", "req/s", higher_is_better=True), facts.throughput_rps


def run_cells(run_dir: Path) -> list[CellFacts]:
    cell_dirs = sorted(path.parent for path in run_dir.glob("cells/*/cell.json"))
    if not cell_dirs:
        raise MeasureError(f"{run_dir}: no cells (cells/*/cell.json)")
    return [cell_facts(path) for path in cell_dirs]


def find_run_dir(folder: Path) -> Path:
    """The run folder `ragload bench --out FOLDER` made (the newest, should there be several)."""
    runs = sorted(path.parent for path in folder.glob("*/summary.csv"))
    if not runs:
        raise MeasureError(f"{folder}: no run folder (no */summary.csv)")
    return runs[-1]


MICRO_FILES = {"cpu": "micro-cpu.json", "wall": "micro-wall.json"}


def side_round(folder: Path) -> SideRound:
    """Everything one side measured in one round, from its round folder."""
    values: dict[str, float] = {}
    metrics: dict[str, Metric] = {}
    times: dict[str, dict[str, float]] = {}
    for clock, name in MICRO_FILES.items():
        more = micro_values(folder / name, clock)
        values.update(more[0])
        metrics.update(more[1])
        times.update(more[2])
    runs_folder = folder / "runs"
    cells = run_cells(find_run_dir(runs_folder))
    for facts in cells:
        metric, value = cell_metric(facts)
        values[metric.key] = value
        metrics[metric.key] = metric
    return SideRound(values, metrics, cells, times)
