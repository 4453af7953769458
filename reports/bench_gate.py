"""`ragload bench-gate`: check one run's ratios against the repository's thresholds; exit 1 on a miss.

Reads the quick-profile run folder and the micro-benchmarks' JSON that `make bench-ci` writes, computes the
ratios (reports/bench_ratios.py) and prints one table: metric, threshold, measured, verdict, and the figures
each ratio came from. A threshold whose metric was not measured fails too (MISSING): a gate that silently
skips a check cannot fail. Ratios without a threshold are listed as `info`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reports.bench_ratios import InputError, Ratio, micro_ratios, run_ratios
from reports.run_data import RunFolderError, load_run

DEFAULT_THRESHOLDS = Path("benchmarks/thresholds.toml")
PASS, FAIL, MISSING, INFO = "pass", "FAIL", "MISSING", "info"


class Threshold(BaseModel):
    """One bound on one ratio: `min` (must be at least) or `max` (must be at most), and why it exists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of `min` or `max`")
        return self

    def passes(self, value: float) -> bool:
        return value >= self.min if self.min is not None else value <= (self.max or 0.0)

    def label(self) -> str:
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


def load_thresholds(path: Path) -> dict[str, Threshold]:
    """metric -> Threshold; raises InputError naming the file and the bad entry."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: {exc}") from exc
    thresholds = {}
    for metric, table in raw.items():
        try:
            thresholds[metric] = Threshold.model_validate(table)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise InputError(f"{path}: [{metric}] {where}: {error['msg']}".replace(" :", ":")) from exc
    if not thresholds:
        raise InputError(f"{path}: no thresholds (a gate without any cannot fail)")
    return thresholds


@dataclass(frozen=True)
class Row:
    metric: str
    threshold: Threshold | None
    ratio: Ratio | None

    @property
    def verdict(self) -> str:
        if self.threshold is None:
            return INFO
        if self.ratio is None:
            return MISSING
        return PASS if self.threshold.passes(self.ratio.value) else FAIL

    @property
    def failed(self) -> bool:
        return self.verdict in (FAIL, MISSING)


def evaluate(ratios: Iterable[Ratio], thresholds: Mapping[str, Threshold]) -> list[Row]:
    """One row per threshold (in the file's order), then the unthresholded ratios."""
    measured = {ratio.metric: ratio for ratio in ratios}
    rows = [Row(metric, threshold, measured.get(metric)) for metric, threshold in thresholds.items()]
    rows += [Row(metric, None, ratio) for metric, ratio in measured.items() if metric not in thresholds]
    return rows


def render_table(rows: Sequence[Row]) -> str:
    header = ("metric", "threshold", "measured", "verdict", "from")
    cells = [
        (
            row.metric,
            row.threshold.label() if row.threshold else "-",
            f"{row.ratio.value:.3f}" if row.ratio else "-",
            row.verdict,
            row.ratio.detail if row.ratio else "not measured in this run",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *cells)) for i in range(len(header) - 1)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values[:-1], widths, strict=True)) + "  " + values[-1]

    rule = "  ".join("-" * w for w in widths) + "  ----"
    return "\n".join([line(header), rule, *(line(c) for c in cells)])


def render_failures(rows: Sequence[Row]) -> str:
    failed = [row for row in rows if row.failed]
    if not failed:
        gated = sum(1 for row in rows if row.threshold)
        return f"bench-gate: all {gated} thresholds pass"
    lines = [f"bench-gate: {len(failed)} of {sum(1 for row in rows if row.threshold)} thresholds fail:"]
    lines += [f"  {row.metric}: {row.threshold.reason if row.threshold else ''}" for row in failed]
    return "\n".join(lines)


def find_run_dir(path: Path) -> Path:
    """`path` itself if it holds a summary.csv, else its newest sub-folder that does."""
    if (path / "summary.csv").is_file():
        return path
    runs = sorted(p.parent for p in path.glob("*/summary.csv"))
    if not runs:
        raise InputError(f"{path}: no run folder (no summary.csv in it or in a sub-folder)")
    return runs[-1]


def gather(run_path: Path, benchmarks_path: Path) -> tuple[Path, list[Ratio]]:
    run_dir = find_run_dir(run_path)
    try:
        report = json.loads(benchmarks_path.read_text(encoding="utf-8"))
        return run_dir, [*run_ratios(load_run(run_dir)), *micro_ratios(report)]
    except (OSError, json.JSONDecodeError, RunFolderError) as exc:
        raise InputError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        type=Path,
        required=True,
        help="a quick-profile run folder, or a folder of runs (newest used)",
    )
    parser.add_argument(
        "--benchmarks", type=Path, required=True, help="pytest-benchmark JSON of `pytest benchmarks`"
    )
    parser.add_argument(
        "--thresholds", type=Path, default=DEFAULT_THRESHOLDS, help=f"default {DEFAULT_THRESHOLDS}"
    )


def main(args: argparse.Namespace) -> int:
    try:
        thresholds = load_thresholds(args.thresholds)
        run_dir, ratios = gather(args.run, args.benchmarks)
    except InputError as exc:
        print(f"ragload bench-gate: {exc}", file=sys.stderr)
        return 2
    rows = evaluate(ratios, thresholds)
    print(f"run {run_dir}; micro-benchmarks {args.benchmarks}; thresholds {args.thresholds}\n")
    print(render_table(rows))
    print()
    print(render_failures(rows))
    return 1 if any(row.failed for row in rows) else 0
