"""A small synthetic run folder on an upstream with a knee: summary rows per trial, the mock's call logs and
config.json's `upstreams`, as `ragload bench` writes them (for the knee lines and the upstream section)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.sweep.summary import SUMMARY_COLUMNS
from mocks.stats import CALL_FIELDS

SEEDS = (11, 22, 33)
KNEE = {"concurrency": 12, "rps": 22.0}
# A curve shaped like vllm-like's: flat-ish to the knee, then every call slower.
CURVE = [
    {"concurrency": c, "ttft_ms": ttft, "latency_ms": latency, "rps": rps}
    for c, ttft, latency, rps in (
        (1, 170, 300, 3.2),
        (4, 190, 360, 11.0),
        (8, 210, 480, 16.7),
        (12, 210, 540, 22.0),
        (16, 430, 800, 19.9),
        (24, 1000, 1430, 16.8),
        (40, 2580, 3130, 12.8),
    )
]


@dataclass(frozen=True)
class KneeCell:
    """One cell: its trials' timeouts out of `requests`, and the calls in flight / call time its log shows."""

    name: str
    architecture: str
    mode: str
    rate: float
    timeouts: Sequence[int]
    in_flight: int  # calls the log keeps in flight
    call_ms: float  # each call's total time
    requests: int = 180
    workers: int | None = None
    upstream: str = "vllm-like"
    burst: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _calls(cell: KneeCell) -> list[list[Any]]:
    """Calls starting every call_ms / in_flight ms, each lasting call_ms: in_flight of them at once."""
    gap = cell.call_ms / cell.in_flight
    rows = []
    for i in range(120):
        started = i * gap
        row = dict.fromkeys(CALL_FIELDS)
        row.update(
            endpoint="chat",
            key=f"{i:016x}",
            occurrence=0,
            status=200,
            actual_ms=cell.call_ms,
            started_ms=round(started, 3),
            ttft_ms=round(cell.call_ms * 0.6, 3),
        )
        rows.append([row[name] for name in CALL_FIELDS])
    return rows


def write_knee_run(run_dir: Path, cells: Sequence[KneeCell]) -> Path:
    rows = []
    for cell in cells:
        for k, timeouts in enumerate(cell.timeouts, start=1):
            trial_id = f"{cell.name}-trial{k}"
            folder = run_dir / "cells" / trial_id
            folder.mkdir(parents=True)
            with (folder / "upstream_calls.csv").open("w", newline="", encoding="utf-8") as handle:
                out = csv.writer(handle)
                out.writerow(CALL_FIELDS)
                out.writerows(_calls(cell))
            ok = cell.requests - timeouts
            duration = 3.0 if cell.burst else 6.0
            rows.append(
                {
                    "cell_id": trial_id,
                    "cell": cell.name,
                    "trial": k,
                    "seed": SEEDS[k - 1],
                    "architecture": cell.architecture,
                    "mode": cell.mode,
                    "load": "open",
                    "workers": cell.workers or "",
                    "rate": cell.rate,
                    "processes": "" if cell.architecture == "queued" else 1,
                    "requests": cell.requests,
                    "ok": ok,
                    "timeouts": timeouts,
                    "errors": 0,
                    "p50_ms": 5000 if timeouts > cell.requests / 2 else 900,
                    "offered_rps": cell.requests / duration,
                    "throughput_rps": ok / duration,
                    "ideal_rps": KNEE["rps"] if cell.upstream == "vllm-like" else cell.rate,
                    "ideal_bound": "upstream",
                    "service_time_ms": 316,
                    "deadline_s": 5,
                    "duration_s": duration,
                    "warmup_s": 0,
                    "slo_e2e_ms": 5000,
                    "slo_ok": ok,
                    "goodput_rps": ok / duration,
                    "upstream": cell.upstream,
                    "server_capacity_rps": 22.0 if cell.workers else "",
                    "upstream_rps": KNEE["rps"] if cell.upstream == "vllm-like" else "",
                    "burst": cell.burst,
                    **cell.extra,
                }
            )
    with (run_dir / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    config = {
        "profile": "knee-test",
        "deadline_s": 5,
        "upstreams": {
            "vllm-like": {"model": "batch", "service_time_ms": 316, "knee": KNEE, "curve": CURVE},
            "unbounded": {"model": "unbounded", "service_time_ms": 315},
        },
    }
    (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (run_dir / "meta.json").write_text(json.dumps({"synthetic": True}), encoding="utf-8")
    return run_dir


def standard_cells(queue_timeouts: Sequence[int] = (0, 1, 0)) -> list[KneeCell]:
    """Asyncio below and past the knee, a 12-worker pool past it, a burst in both designs, the contrast."""
    return [
        KneeCell("01-async-r18", "sync", "asyncio", 18, (0, 0, 0), in_flight=9, call_ms=450),
        KneeCell("02-async-r30", "sync", "asyncio", 30, (120, 126, 118), in_flight=40, call_ms=3700),
        KneeCell("03-queued-w12-r30", "queued", "longpoll", 30, queue_timeouts, 12, 540, workers=12),
        KneeCell(
            "04-queued-w12-r60", "queued", "longpoll", 60, (70, 75, 72), 12, 540, workers=12, burst=True
        ),
        KneeCell("05-async-r60", "sync", "asyncio", 60, (170, 175, 172), 150, 6000, burst=True),
        KneeCell("06-async-r30-unb", "sync", "asyncio", 30, (0, 0, 0), 10, 300, upstream="unbounded"),
    ]
