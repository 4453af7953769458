"""Per-request samples: the raw rows a Locust process writes, and the `samples.csv` of a run folder.

A generator process appends raw rows (absolute start time, lag behind the arrival schedule) to its own file;
the sweep merges the files of a cell, makes times relative to the cell's start, drops the warm-up and writes
`cells/<cell_id>/samples.csv` with exactly SAMPLE_COLUMNS (docs/architecture.md, "A run folder").
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SAMPLE_COLUMNS = (
    "t",
    "architecture",
    "mode",
    "kind",
    "latency_ms",
    "outcome",
    "status",
    "queue_wait_ms",
    "run_ms",
    "polls",
    "request",
)
RAW_COLUMNS = ("start", "lag_ms", *SAMPLE_COLUMNS[1:])
OUTCOMES = ("ok", "timeout", "error")
KINDS = ("e2e", "submit", "probe")


@dataclass(frozen=True)
class Sample:
    """One request. `t` is seconds since the cell started (raw files: seconds since the epoch)."""

    t: float
    architecture: str
    mode: str
    kind: str
    latency_ms: float
    outcome: str
    status: int
    queue_wait_ms: float | None = None
    run_ms: float | None = None
    polls: int | None = None
    lag_ms: float = 0.0  # raw only: how late the arrival was started (open loop; pool exhausted if > 0)
    request: str = ""  # the request's name (user_support.request_query): the same request in every cell at
    # one load and trial, so cells can be compared request by request; a submit and its e2e share it

    def cells(self) -> list[str]:
        return [
            f"{self.t:.4f}",
            self.architecture,
            self.mode,
            self.kind,
            f"{self.latency_ms:.3f}",
            self.outcome,
            str(self.status),
            _opt(self.queue_wait_ms),
            _opt(self.run_ms),
            "" if self.polls is None else str(self.polls),
            self.request,
        ]


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _float(text: str) -> float | None:
    return float(text) if text != "" else None


class RawSampleWriter:
    """Appends raw rows to one file (one writer per generator process; flushed on close)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        self._file: IO[str] = path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(RAW_COLUMNS)

    def write(self, sample: Sample) -> None:
        self._csv.writerow([f"{sample.t:.6f}", f"{sample.lag_ms:.3f}", *sample.cells()[1:]])

    def close(self) -> None:
        self._file.close()


def read_raw(path: Path) -> Iterator[Sample]:
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            yield Sample(
                t=float(row["start"]),
                architecture=row["architecture"],
                mode=row["mode"],
                kind=row["kind"],
                latency_ms=float(row["latency_ms"]),
                outcome=row["outcome"],
                status=int(row["status"]),
                queue_wait_ms=_float(row["queue_wait_ms"]),
                run_ms=_float(row["run_ms"]),
                polls=int(row["polls"]) if row["polls"] else None,
                lag_ms=float(row["lag_ms"]),
                request=row.get("request") or "",
            )


def write_samples(path: Path, samples: Iterable[Sample]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(SAMPLE_COLUMNS)
        for sample in samples:
            out.writerow(sample.cells())
            count += 1
    return count


def read_samples(path: Path) -> list[Sample]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Sample(
                t=float(row["t"]),
                architecture=row["architecture"],
                mode=row["mode"],
                kind=row["kind"],
                latency_ms=float(row["latency_ms"]),
                outcome=row["outcome"],
                status=int(row["status"]),
                queue_wait_ms=_float(row["queue_wait_ms"]),
                run_ms=_float(row["run_ms"]),
                polls=int(row["polls"]) if row["polls"] else None,
                request=row.get("request") or "",
            )
            for row in csv.DictReader(handle)
        ]
