"""`ragload bench-ci`'s rounds: alternating order, early stop, the time budget, a base that cannot run.

The sides' measurements are replaced by synthetic round folders (tests/reports/gate/synthetic_gate.py): what
is tested here is the orchestration; the real measurement runs in `make bench-ci` itself.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import pytest

from loadtests.gate import command
from loadtests.gate.sides import Side
from tests.reports.gate.synthetic_gate import write_side


def arguments(tmp_path: Path, **changes: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "gate"), "--cache", str(tmp_path / "cache")])
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def fake_gate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slowdown: float, noise: float, base_fails: bool = False
) -> list[tuple[int, str]]:
    """Replace the checkout and the measurements; return the (round, side) log of what was measured."""
    rng = random.Random(5)
    measured: list[tuple[int, str]] = []
    sides = {name: Side(name, tmp_path, Path("python"), tmp_path / name) for name in ("A", "B")}

    def prepare(args: argparse.Namespace) -> tuple[dict[str, Side], dict[str, Any]]:
        record = {"base": {"rev": "a" * 40, "label": "(test)"}, "head": {"rev": "b" * 40, "dirty": False},
                  "threshold": args.threshold, "rounds": []}  # fmt: skip
        return dict(sides), record

    def measure(side: Side, profile: Path, folder: Path) -> dict[str, Any]:
        measured.append((int(folder.name[:2]), side.name))
        if side.name == "A" and base_fails:
            return {"ok": False, "error": "the base's bench could not parse the profile"}
        write_side(folder, slowdown if side.name == "B" else 1.0, rng, noise)
        return {"ok": True, "error": None, "micro_s": 1.0, "cells_s": 2.0}

    monkeypatch.setattr(command, "_prepare", prepare)
    monkeypatch.setattr(command, "measure", measure)
    monkeypatch.setattr(command, "remove_checkout", lambda repo, path: None)
    return measured


def test_rounds_alternate_and_stop_once_every_metric_is_decided(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    measured = fake_gate(monkeypatch, tmp_path, slowdown=1.0, noise=0.005)
    assert command.main(arguments(tmp_path)) == 0
    assert measured == [(1, "A"), (1, "B"), (2, "B"), (2, "A"), (3, "A"), (3, "B")]
    gate = json.loads((tmp_path / "gate" / "gate.json").read_text())
    assert [entry["order"] for entry in gate["rounds"]] == [["A", "B"], ["B", "A"], ["A", "B"]]
    assert "bench-ci: pass" in (tmp_path / "gate" / "verdict.txt").read_text()


def test_undecided_metrics_get_more_rounds_up_to_the_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measured = fake_gate(monkeypatch, tmp_path, slowdown=1.0, noise=0.2)
    command.main(arguments(tmp_path, max_rounds=5))
    assert max(index for index, _ in measured) == 5
    assert "cannot tell" in capsys.readouterr().out


def test_no_round_starts_past_the_time_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    measured = fake_gate(monkeypatch, tmp_path, slowdown=1.0, noise=0.2)
    command.main(arguments(tmp_path, max_minutes=0.0))
    assert max(index for index, _ in measured) == 3  # the minimum always runs


def test_a_regression_fails_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_gate(monkeypatch, tmp_path, slowdown=1.6, noise=0.02)
    assert command.main(arguments(tmp_path)) == 1
    assert "bench-ci: FAIL" in (tmp_path / "gate" / "verdict.txt").read_text()


def test_a_base_that_cannot_run_is_dropped_and_the_sanity_bounds_decide(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measured = fake_gate(monkeypatch, tmp_path, slowdown=1.0, noise=0.01, base_fails=True)
    assert command.main(arguments(tmp_path)) == 0
    assert measured == [(1, "A"), (1, "B")]
    out = capsys.readouterr().out
    assert "the base could not be measured" in out
    assert "no base measured: sanity bounds only" in out
