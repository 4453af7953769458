"""`ragload bench-gate FOLDER`: the verdict of an A/B gate folder, as a table; exit 1 on a regression.

The folder is what `ragload bench-ci` (loadtests/gate/) writes: `gate.json` (which revisions, which rounds,
in which order) and, per round and side, a folder `rounds/<nn>-<A|B>/` (reports/gate/measures.py reads it).
Only rounds in which both sides ran are paired. The gate fails when a metric is slower by more than the
threshold with 95 % confidence (reports/gate/compare.py), when a sanity bound of the change misses
(reports/gate/sanity.py), or when the change could not be measured at all. "cannot tell" does not fail: it
says how many rounds would decide.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reports.gate.compare import CANNOT_TELL, DEFAULT_THRESHOLD, Comparison, compare
from reports.gate.measures import MeasureError, Metric, SideRound, side_round
from reports.gate.sanity import Bound, Check, Figure, SanityError, check, figures, load_bounds

DEFAULT_BOUNDS = Path(__file__).resolve().parents[2] / "benchmarks" / "sanity.toml"
SIDES = ("A", "B")


class GateFolderError(ValueError):
    """Not a gate folder, or one whose change (B) never ran; the message says why."""


@dataclass(frozen=True)
class Row:
    metric: Metric
    comparison: Comparison | None  # None: measured on one side only
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.comparison is not None and self.comparison.failed and not self.metric.control


@dataclass
class GateResult:
    folder: Path
    gate: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, list[Figure]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    paired_rounds: int = 0

    @property
    def failed(self) -> bool:
        return any(row.failed for row in self.rows) or any(c.failed for c in self.checks)

    @property
    def undecided(self) -> list[Row]:
        """Metrics another round could decide (the control's own verdict never asks for one)."""
        return [
            row
            for row in self.rows
            if row.comparison is not None and row.comparison.verdict == CANNOT_TELL and not row.metric.control
        ]


def load_gate(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / "gate.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise GateFolderError(f"{folder}: no readable gate.json ({exc})") from exc


def side_rounds(folder: Path, gate: dict[str, Any]) -> tuple[list[dict[str, SideRound]], list[str]]:
    """Per round, the sides that ran and were readable; and a note for every side that did not."""
    rounds: list[dict[str, SideRound]] = []
    notes: list[str] = []
    for entry in gate.get("rounds", []):
        measured: dict[str, SideRound] = {}
        for side, info in entry.get("sides", {}).items():
            where = f"round {entry['index']} {side}"
            if not info.get("ok"):
                notes.append(f"{where} did not run: {info.get('error') or 'unknown error'}")
                continue
            side_folder = folder / info["folder"]
            try:
                measured[side] = side_round(side_folder)
            except MeasureError as exc:
                notes.append(f"{where} is unreadable: {exc}")
        rounds.append(measured)
    return rounds, notes


def evaluate(folder: Path, bounds: dict[str, Bound], threshold: float | None = None) -> GateResult:
    gate = load_gate(folder)
    threshold = float(gate.get("threshold", DEFAULT_THRESHOLD)) if threshold is None else threshold
    rounds, notes = side_rounds(folder, gate)
    b_rounds = [r["B"] for r in rounds if "B" in r]
    if not b_rounds:
        raise GateFolderError(f"{folder}: the change (B) was not measured in any round; " + "; ".join(notes))
    result = GateResult(folder, gate, notes=notes)
    paired = [r for r in rounds if "A" in r and "B" in r]
    result.paired_rounds = len(paired)
    metrics = {key: metric for r in b_rounds for key, metric in r.metrics.items()}
    for key, metric in metrics.items():
        if not paired:
            result.rows.append(Row(metric, None, "no base measured"))
            continue
        pairs = [(r["A"].values.get(key), r["B"].values.get(key)) for r in paired]
        a = [x for x, _ in pairs if x is not None]
        b = [y for _, y in pairs if y is not None]
        if len(a) != len(pairs) or len(b) != len(pairs):
            result.rows.append(Row(metric, None, "new: not measured by the base"))
            continue
        result.rows.append(Row(metric, compare(a, b, metric.higher_is_better, threshold)))
    result.figures = {"B": figures(b_rounds), "A": figures([r["A"] for r in rounds if "A" in r])}
    result.checks = check(result.figures["B"], bounds)
    return result


# ---- rendering ---------------------------------------------------------------------------------------------


def _value(value: float, unit: str) -> str:
    return f"{value:.2f} {unit}" if unit == "req/s" else f"{value:.3g} {unit}"


def _columns(row: Row) -> tuple[str, ...]:
    c = row.comparison
    label = row.metric.label
    if c is None:
        return (label, "-", "-", "-", "-", row.note)
    interval = "(2 rounds: none)" if c.rounds < 3 else f"[{c.low:.3f}, {c.high:.3f}]"
    verdict = c.verdict
    if c.verdict == CANNOT_TELL:
        verdict += f" (≈ {c.rounds_needed} rounds)" if c.rounds_needed else " (more rounds)"
    if row.metric.control:
        verdict = f"control: {verdict}"
    unit = row.metric.unit
    return (label, _value(c.a, unit), _value(c.b, unit), f"{c.slowdown:.3f}", interval, verdict)


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in (header, *lines)) for i in range(len(header) - 1)]

    def one(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values[:-1], widths, strict=True)) + "  " + values[-1]

    rule = "  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1])
    return "\n".join([one(header), rule, *(one(line) for line in lines)])


def render(result: GateResult) -> str:
    gate = result.gate
    base, head = gate.get("base") or {}, gate.get("head") or {}
    threshold = float(gate.get("threshold", DEFAULT_THRESHOLD))
    lines = [
        f"A (base) {base.get('rev') or '-'} {base.get('label', '')}".rstrip(),
        f"B (change) {head.get('rev') or '-'}{' + uncommitted changes' if head.get('dirty') else ''}",
        f"{result.paired_rounds} paired rounds (A and B interleaved); slowdown = B/A for times, A/B for "
        "rates: above 1 the change is worse. "
        f"FAIL = slower by more than {threshold:.0%} with 95 % confidence.",
        "",
    ]
    header = ("metric", "A", "B", "slowdown", "95 % interval", "verdict")
    lines.append(_table(header, [_columns(row) for row in result.rows]))
    lines += ["", "Physics (information; medians over rounds; bounds from benchmarks/sanity.toml):"]
    checks = {(c.figure.name, c.figure.subject): c for c in result.checks if c.figure is not None}
    base_figures = {(f.name, f.subject): f for f in result.figures.get("A", [])}
    physics = []
    for fig in result.figures.get("B", []):
        base_figure = base_figures.get((fig.name, fig.subject))
        bound = checks.get((fig.name, fig.subject))
        verdict = f"{'FAIL' if bound.failed else 'pass'} ({bound.bound.label()})" if bound else "info"
        a_value = f"{base_figure.value:.3f}" if base_figure else "-"
        physics.append((fig.name, fig.subject, a_value, f"{fig.value:.3f}", verdict, fig.detail))
    lines.append(_table(("figure", "where", "A", "B", "bound", "B from"), physics))
    missing = [c for c in result.checks if c.figure is None]
    lines += [f"  {c.name}: not measured ({c.bound.reason})" for c in missing]
    if result.notes:
        lines += ["", *(f"note: {note}" for note in result.notes)]
    lines += ["", summary(result)]
    return "\n".join(lines)


def summary(result: GateResult) -> str:
    failed = [row for row in result.rows if row.failed]
    missed = [c for c in result.checks if c.failed]
    if not failed and not missed:
        undecided = len(result.undecided)
        told = f"; {undecided} metric(s) cannot tell yet" if undecided else ""
        base = "" if result.paired_rounds else " (no base measured: sanity bounds only)"
        return f"bench-ci: pass{base}{told}"
    out = ["bench-ci: FAIL"]
    out += [f"  {row.metric.label}: slower than the base beyond the threshold" for row in failed]
    out += [f"  {c.name}: {c.bound.reason}" for c in missed]
    return "\n".join(out)


def write(result: GateResult) -> Path:
    """verdict.txt (the table) and verdict.json (every figure) into the gate folder."""
    (result.folder / "verdict.txt").write_text(render(result) + "\n", encoding="utf-8")
    data = {
        "failed": result.failed,
        "paired_rounds": result.paired_rounds,
        "rows": [
            {
                "metric": asdict(row.metric),
                "comparison": asdict(row.comparison) if row.comparison else None,
                "note": row.note,
            }
            for row in result.rows
        ],  # fmt: skip
        "figures": {side: [asdict(f) for f in figs] for side, figs in result.figures.items()},
        "checks": [
            {"name": c.name, "bound": c.bound.model_dump(), "failed": c.failed} for c in result.checks
        ],
        "notes": result.notes,
    }
    path = result.folder / "verdict.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# ---- the command -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="a gate folder written by `ragload bench-ci`")
    parser.add_argument("--bounds", type=Path, default=DEFAULT_BOUNDS, help=f"default {DEFAULT_BOUNDS}")


def main(args: argparse.Namespace) -> int:
    try:
        result = evaluate(args.folder, load_bounds(args.bounds))
    except (GateFolderError, SanityError) as exc:
        print(f"ragload bench-gate: {exc}", file=sys.stderr)
        return 2
    write(result)
    print(render(result))
    return 1 if result.failed else 0
