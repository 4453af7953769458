"""`ragload bench-ci`: the regression gate. The change (B, this working tree) against its base (A), measured
in turn on this machine, several rounds, and judged by significance (reports/gate/verdict.py).

Rounds alternate the order — A B, B A, A B, … — so that a machine that drifts (warms up, gets busier) weighs
on both sides alike. After `--min-rounds`, another round runs only while some metric "cannot tell" and the
next round still fits in `--max-minutes`. Everything lands in the gate folder (default .ragload/bench-ci/):
gate.json, rounds/<nn>-<A|B>/{micro-cpu.json, micro-wall.json, runs/, *.log}, verdict.txt and verdict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from loadtests.gate.base import GateSetupError, check_out, git, python_for, remove_checkout, resolve_base
from loadtests.gate.sides import Side, measure
from loadtests.sweep.run_folder import iso_now, machine_facts
from reports.gate.compare import DEFAULT_THRESHOLD, MIN_ROUNDS
from reports.gate.sanity import SanityError, load_bounds
from reports.gate.verdict import DEFAULT_BOUNDS, GateFolderError, GateResult, evaluate, render, write

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(".ragload/bench-ci")
DEFAULT_CACHE = Path(".ragload/gate-cache")  # the base's checkout, venvs and data dirs, kept between runs
DEFAULT_PROFILE = REPO / "benchmarks" / "gate.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        default=os.environ.get("BENCH_BASE") or None,
        help="the revision to compare with (default: $BENCH_BASE, else the parent of HEAD, or HEAD when the "
        "working tree has uncommitted changes)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"gate folder (default {DEFAULT_OUT})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE}")
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE, help=f"default {DEFAULT_PROFILE}")
    parser.add_argument("--bounds", type=Path, default=DEFAULT_BOUNDS, help=f"default {DEFAULT_BOUNDS}")
    parser.add_argument("--min-rounds", type=int, default=MIN_ROUNDS, help=f"default {MIN_ROUNDS}")
    parser.add_argument("--max-rounds", type=int, default=6, help="default 6")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=5.0,
        help="no round starts that would end past this (default 5); --min-rounds always run",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"practical margin: slower by more than this fails (default {DEFAULT_THRESHOLD})",
    )


class Gate:
    """The rounds of one gate run and the gate.json that records them."""

    def __init__(self, args: argparse.Namespace, sides: dict[str, Side], record: dict[str, Any]) -> None:
        self.args = args
        self.sides = sides
        self.record = record
        self.folder: Path = args.out
        self.started = time.monotonic()
        self.round_seconds: list[float] = []

    def save(self) -> None:
        self.record["wall_s"] = round(time.monotonic() - self.started, 1)
        (self.folder / "gate.json").write_text(json.dumps(self.record, indent=2) + "\n", encoding="utf-8")

    def run_round(self, index: int) -> None:
        began = time.monotonic()
        order = ["A", "B"] if index % 2 else ["B", "A"]
        entry: dict[str, Any] = {"index": index, "order": [o for o in order if o in self.sides], "sides": {}}
        self.record["rounds"].append(entry)
        for name in entry["order"]:
            folder = f"rounds/{index:02d}-{name}"
            result = measure(self.sides[name], self.args.profile.resolve(), self.folder / folder)
            entry["sides"][name] = {"folder": folder, **result}
            self.save()
            print(self._progress(index, name, result), flush=True)
            if not result["ok"] and name == "A":
                print("  the base could not be measured: no later round runs it", flush=True)
                del self.sides["A"]
        self.round_seconds.append(time.monotonic() - began)

    def _progress(self, index: int, name: str, result: dict[str, Any]) -> str:
        elapsed = (time.monotonic() - self.started) / 60
        what = "base" if name == "A" else "change"
        if not result["ok"]:
            return f"[round {index}] {name} ({what}) FAILED: {result['error']}"
        return (
            f"[round {index}] {name} ({what}): micro-benchmarks {result['micro_s']:.0f} s, "
            f"cells {result['cells_s']:.0f} s; elapsed {elapsed:.1f} min"
        )

    def another_round_fits(self) -> bool:
        next_round = max(self.round_seconds) if self.round_seconds else 0.0
        return time.monotonic() - self.started + next_round <= self.args.max_minutes * 60


def _prepare(args: argparse.Namespace) -> tuple[dict[str, Side], dict[str, Any]]:
    base = resolve_base(REPO, args.base)
    head = git(REPO, "rev-parse", "HEAD")
    dirty = bool(git(REPO, "status", "--porcelain", "--untracked-files=no"))
    cache = args.cache.resolve()
    sides = {"B": Side("B", REPO, Path(sys.executable), cache / "data-B")}
    record: dict[str, Any] = {
        "started": iso_now(),
        "base": {"rev": base.rev, "label": base.label},
        "head": {"rev": head, "dirty": dirty},
        "threshold": args.threshold,
        "profile": str(args.profile),
        "machine": machine_facts(),
        "rounds": [],
    }
    print(f"B (change): {head[:12]}{' + uncommitted changes' if dirty else ''}")
    if base.rev is None:
        print(f"A (base): none — {base.label}; the sanity bounds alone decide", flush=True)
        return sides, record
    print(f"A (base): {base.rev[:12]} {base.label}", flush=True)
    tree = check_out(REPO, base.rev, cache / "base")
    python, why = python_for(tree, cache)
    record["base"]["python"] = why
    print(f"  checked out at {tree}; runs with {why}", flush=True)
    sides["A"] = Side("A", tree, python, cache / "data-A")
    return sides, record


def _rounds(gate: Gate) -> GateResult:
    bounds = load_bounds(gate.args.bounds)
    index = 0
    while True:
        index += 1
        gate.run_round(index)
        if not gate.record["rounds"][-1]["sides"].get("B", {}).get("ok"):
            break  # the change does not run: nothing more to learn
        if "A" not in gate.sides:
            break  # no base, or it could not run: one round gives the sanity figures
        if index < gate.args.min_rounds:
            continue
        undecided = len(evaluate(gate.folder, bounds).undecided)
        if not undecided:
            break
        if index >= gate.args.max_rounds or not gate.another_round_fits():
            print(f"  {undecided} metric(s) cannot tell; no time for round {index + 1}")
            break
        print(f"  {undecided} metric(s) cannot tell yet: round {index + 1}", flush=True)
    return evaluate(gate.folder, bounds)


def main(args: argparse.Namespace) -> int:
    if args.min_rounds < MIN_ROUNDS or args.max_rounds < args.min_rounds:
        print(f"ragload bench-ci: need {MIN_ROUNDS} <= --min-rounds <= --max-rounds", file=sys.stderr)
        return 2
    args.out = args.out.resolve()  # the sides run in their own trees: every path they get is absolute
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    try:
        sides, record = _prepare(args)
    except GateSetupError as exc:
        print(f"ragload bench-ci: {exc}", file=sys.stderr)
        return 2
    gate = Gate(args, sides, record)
    gate.save()
    try:
        result = _rounds(gate)
    except (GateFolderError, SanityError) as exc:
        print(f"ragload bench-ci: {exc}", file=sys.stderr)
        return 1
    finally:
        gate.record["ended"] = iso_now()
        gate.save()
        if "base" in record and record["base"]["rev"]:
            remove_checkout(REPO, args.cache.resolve() / "base")
    write(result)
    print()
    print(render(result))
    print(f"\ngate folder: {args.out}")
    return 1 if result.failed else 0
