"""`ragload bench-gate FOLDER` on synthetic gate folders: what passes, what fails, and what the table says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.cli import main as ragload
from reports.gate.sanity import load_bounds
from reports.gate.verdict import DEFAULT_BOUNDS, GateFolderError, evaluate
from tests.reports.gate.synthetic_gate import write_gate


def test_an_unchanged_tree_passes_and_every_metric_has_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_gate(tmp_path, rounds=3)
    assert ragload(["bench-gate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bench-ci: pass" in out
    assert "3 paired rounds" in out
    for label in (
        "queued longpoll w4 u12: throughput",
        "queued longpoll w1 u1: p50 − S",
        "control: fixed CPU",
    ):
        assert label in out
    assert "FAIL" not in out.split("confidence.", 1)[1]  # after the header's explanation of FAIL
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["failed"] is False and verdict["paired_rounds"] == 3


def test_a_slower_change_fails_on_the_metrics_it_slowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_gate(tmp_path, rounds=3, slowdown=1.5)
    assert ragload(["bench-gate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bench-ci: FAIL" in out
    result = evaluate(tmp_path, load_bounds(DEFAULT_BOUNDS))
    failed = {row.metric.key for row in result.rows if row.failed}
    assert "cell:queued longpoll w4 u12:throughput" in failed
    assert "micro:test_pipeline_inline" in failed
    assert "micro:test_cpu_reference" not in failed  # the control is the same code on both sides


def test_a_sanity_bound_fails_the_change_even_without_a_regression(tmp_path: Path) -> None:
    write_gate(tmp_path, rounds=3, b_throughput_rps=5.0)  # 5 req/s of 4/S = 19: far below half
    result = evaluate(tmp_path, load_bounds(DEFAULT_BOUNDS))
    missed = [c for c in result.checks if c.failed]
    assert [c.name for c in missed] == ["queued_throughput_vs_capacity"]
    assert result.failed


def test_without_a_base_only_the_sanity_bounds_decide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_gate(tmp_path, rounds=1, with_base=False)
    assert ragload(["bench-gate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no base measured: sanity bounds only" in out


def test_a_change_that_never_ran_is_an_error(tmp_path: Path) -> None:
    write_gate(tmp_path, rounds=3)
    gate = json.loads((tmp_path / "gate.json").read_text())
    for entry in gate["rounds"]:
        entry["sides"]["B"] = {"folder": "x", "ok": False, "error": "exit 1"}
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    with pytest.raises(GateFolderError, match="was not measured"):
        evaluate(tmp_path, load_bounds(DEFAULT_BOUNDS))
    assert ragload(["bench-gate", str(tmp_path)]) == 2
