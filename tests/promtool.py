"""Prometheus' own tool (Debian's `prometheus` package, installed by .ci/run) to check configs and evaluate
PromQL in tests: `promtool check config` parses a scrape config as Prometheus would, `promtool test rules`
evaluates expressions on given series with Prometheus' query engine (no server, no network)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMTOOL = shutil.which("promtool")
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool absent: `apt-get install prometheus` (.ci/run installs it)"
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def expression_test(series: dict[str, float], expr: str, expected: float) -> dict[str, Any]:
    """One group of `promtool test rules`: `expr` evaluated once on `series` (selector → value) is `expected`,
    a single sample without labels."""
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": f"{value:g}"} for name, value in series.items()],
        "promql_expr_test": [
            {"expr": expr, "eval_time": "0m", "exp_samples": [{"labels": "{}", "value": expected}]}
        ],
    }


def run_expression_tests(groups: list[dict[str, Any]], folder: Path) -> subprocess.CompletedProcess[str]:
    """Run `promtool test rules` on the groups (see `expression_test`); returncode 0 when all hold."""
    path = folder / "promql-tests.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": groups}, sort_keys=False), encoding="utf-8")
    return promtool("test", "rules", path)
