"""A synthetic gate folder, shaped like what `ragload bench-ci` writes, for tests of the verdict.

Each side's round has the two micro-benchmark JSON files and a run folder of the gate profile's two cells.
`slowdown` makes B's code slower by that factor (times × slowdown, throughput ÷ slowdown); `noise` is the
relative spread of every figure from round to round (seeded).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SERVICE_MS = 210.0
# benchmark -> (clock, healthy figure in ms)
MICRO_MS: Mapping[str, tuple[str, float]] = {
    "test_cpu_reference": ("cpu", 2.4),
    "test_enqueue_and_status": ("cpu", 0.6),
    "test_pipeline_inline": ("cpu", 3.9),
    "test_job_process_query": ("cpu", 2.8),
    "test_summary": ("cpu", 30.0),
    "test_mock_chat": ("wall", 0.5),
    "test_mock_chat_at_configured_latency": ("wall", 51.0),
}
HEALTHY_OVERHEAD_MS = 15.0
HEALTHY_THROUGHPUT_RPS = 17.5  # of 4/S = 19.05


def _micro_json(path: Path, figures: Mapping[str, float]) -> None:
    benchmarks = []
    for name, ms in figures.items():
        extra = {"configured_ms": 50} if name == "test_mock_chat_at_configured_latency" else {}
        stats = {"min": ms / 1000, "median": ms * 1.05 / 1000}
        benchmarks.append({"name": name, "stats": stats, "extra_info": extra})
    path.write_text(json.dumps({"benchmarks": benchmarks}), encoding="utf-8")


def _cell(
    run: Path, index: int, workers: int, users: int, p50_ms: float, rps: float, failed: int = 0
) -> None:
    cell_id = f"{index:02d}-queued-longpoll-closed-w{workers}-u{users}"
    folder = run / "cells" / cell_id
    folder.mkdir(parents=True)
    duration = 6.0
    completed = round(rps * duration)
    cell = {
        "index": index, "cell_id": cell_id, "architecture": "queued", "mode": "longpoll", "load": "closed",
        "workers": workers, "users": users, "rate": None, "duration_s": duration, "warmup_s": 2.0,
        "deadline_s": 5.0, "service_time_ms": SERVICE_MS, "completed_ok_in_window": completed,
    }  # fmt: skip
    (folder / "cell.json").write_text(json.dumps(cell), encoding="utf-8")
    with (folder / "samples.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["t", "architecture", "mode", "kind", "latency_ms", "outcome", "status"])
        for i in range(completed):
            out.writerow([2 + i * duration / completed, "queued", "longpoll", "e2e", p50_ms, "ok", 200])
        for i in range(failed):
            out.writerow([3 + i * 0.01, "queued", "longpoll", "e2e", 5000, "timeout", 0])
        out.writerow([3, "queued", "longpoll", "submit", 3.0, "ok", 202])
    with (run / "summary.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"{cell_id}\n")


def write_side(
    folder: Path, slowdown: float, rng: random.Random, noise: float, throughput_rps: float | None = None
) -> None:
    """One side's round folder: micro-cpu.json, micro-wall.json and runs/<ts>/ with the two cells."""
    folder.mkdir(parents=True)

    def jitter(value: float) -> float:
        return value * (1 + rng.gauss(0, noise))

    for clock in ("cpu", "wall"):
        figures = {
            name: jitter(ms * (1 if name == "test_cpu_reference" else slowdown))
            for name, (c, ms) in MICRO_MS.items()
            if c == clock
        }
        _micro_json(folder / f"micro-{clock}.json", figures)
    run = folder / "runs" / "20261202-120000"
    (run / "cells").mkdir(parents=True)
    rps = throughput_rps if throughput_rps is not None else HEALTHY_THROUGHPUT_RPS
    _cell(run, 1, 4, 12, SERVICE_MS * 3, jitter(rps / slowdown))
    _cell(run, 2, 1, 1, SERVICE_MS + jitter(HEALTHY_OVERHEAD_MS * slowdown), 4.0)


def write_gate(
    folder: Path,
    rounds: int,
    slowdown: float = 1.0,
    noise: float = 0.02,
    seed: int = 1,
    with_base: bool = True,
    b_throughput_rps: float | None = None,
) -> Path:
    rng = random.Random(seed)
    record: dict[str, Any] = {
        "base": {"rev": "a" * 40 if with_base else None, "label": "(the parent of HEAD)"},
        "head": {"rev": "b" * 40, "dirty": False},
        "threshold": 0.10,
        "rounds": [],
    }
    for index in range(1, rounds + 1):
        order = ["A", "B"] if index % 2 else ["B", "A"]
        sides: dict[str, Any] = {}
        for name in order if with_base else ["B"]:
            side_folder = f"rounds/{index:02d}-{name}"
            factor = slowdown if name == "B" else 1.0
            throughput = b_throughput_rps if name == "B" else None
            write_side(folder / side_folder, factor, rng, noise, throughput)
            sides[name] = {"folder": side_folder, "ok": True, "error": None}
        record["rounds"].append({"index": index, "order": order, "sides": sides})
    (folder / "gate.json").write_text(json.dumps(record), encoding="utf-8")
    return folder
