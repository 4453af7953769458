"""`ragload bench-gate` on synthetic inputs: a healthy run passes, a slower job fails; the table says why."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.cli import main as ragload
from reports.bench_gate import DEFAULT_THRESHOLDS, InputError, load_thresholds

REPO = Path(__file__).resolve().parents[2]
SERVICE_MS = 261.253  # the quick profile's configured S
EXTRA_JOB_MS = 50.0  # the regression of the demo in the README: time.sleep(0.05) in process_query

# Figures shaped like a real `make bench-ci` on 2 cores (milliseconds).
HEALTHY_MICRO_MS = {
    "test_cpu_reference": 1.9,
    "test_enqueue_and_status": 0.55,
    "test_pipeline_inline": 1.9,
    "test_job_process_query": 1.9,
    "test_mock_chat": 0.33,
    "test_summary": 19.0,
    "test_mock_chat_at_configured_latency": 51.0,
}


def summary_rows(extra_job_ms: float) -> list[dict[str, Any]]:
    """The quick profile's cells; each queued job `extra_job_ms` slower than a healthy one."""
    per_worker_rps = 1000 / (SERVICE_MS + 8 + extra_job_ms)
    rows: list[dict[str, Any]] = [
        {
            "cell_id": f"0{i}-queued-w{w}",
            "architecture": "queued",
            "mode": "longpoll",
            "load": "closed",
            "workers": w,
            "users": 3 * w,
            "throughput_rps": round(w * per_worker_rps, 2),
            "p50_ms": 800,
        }
        for i, w in enumerate((1, 2, 4, 8), 1)
    ]
    rows.append(
        {
            "cell_id": "05-queued-open",
            "architecture": "queued",
            "mode": "longpoll",
            "load": "open",
            "workers": 4,
            "rate": 24,
            "throughput_rps": 12.3,
            "p50_ms": 5000,
        }
    )
    rows.append(
        {
            "cell_id": "06-sync-threadpool",
            "architecture": "sync",
            "mode": "threadpool",
            "load": "open",
            "rate": 6,
            "throughput_rps": 6.0,
            "p50_ms": 271.2,
        }
    )
    return rows


def write_run(root: Path, extra_job_ms: float = 0.0) -> Path:
    run_dir = root / "runs" / "20260101-000000"
    run_dir.mkdir(parents=True)
    rows = summary_rows(extra_job_ms)
    columns = [
        "cell_id",
        "architecture",
        "mode",
        "load",
        "workers",
        "users",
        "rate",
        "requests",
        "timeouts",
        "errors",
        "p50_ms",
        "throughput_rps",
        "ideal_rps",
        "generator_saturated",
    ]
    with (run_dir / "summary.csv").open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=columns, restval="")
        out.writeheader()
        out.writerows({"requests": 100, "timeouts": 0, "errors": 0, **row} for row in rows)
    config = {
        "service_time_model": {"service_time_ms": SERVICE_MS},
        "overhead_ms": {"queued": 7.8 + extra_job_ms, "sync": 3.2},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "meta.json").write_text("{}")
    return run_dir


def write_micro(root: Path, extra_job_ms: float = 0.0) -> Path:
    figures = dict(
        HEALTHY_MICRO_MS, test_job_process_query=HEALTHY_MICRO_MS["test_job_process_query"] + extra_job_ms
    )
    benchmarks = [
        {"name": name, "stats": {"median": ms / 1000, "min": ms / 1000}, "extra_info": {}}
        for name, ms in figures.items()
    ]
    benchmarks[-1]["extra_info"] = {"configured_ms": 50}
    path = root / "micro.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def gate(root: Path, thresholds: Path) -> int:
    return ragload(
        [
            "bench-gate",
            "--run",
            str(root / "runs"),
            "--benchmarks",
            str(root / "micro.json"),
            "--thresholds",
            str(thresholds),
        ]
    )


def table_rows(output: str) -> dict[str, list[str]]:
    """metric -> [threshold, measured, verdict] from the printed table."""
    rows = {}
    for line in output.splitlines():
        parts = line.split("  ")
        cells = [p.strip() for p in parts if p.strip()]
        if len(cells) >= 4 and cells[3] in ("pass", "FAIL", "MISSING", "info"):
            rows[cells[0]] = cells[1:4]
    return rows


def test_the_repositorys_thresholds_pass_a_healthy_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path)
    write_micro(tmp_path)
    assert gate(tmp_path, REPO / DEFAULT_THRESHOLDS) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    gated = load_thresholds(REPO / DEFAULT_THRESHOLDS)
    assert {metric for metric, row in rows.items() if row[2] == "pass"} == set(gated)
    assert rows["job_vs_pipeline"] == ["<= 1.5", "1.000", "pass"]
    assert rows["queued_open_w4_r24_throughput_vs_capacity"][2] == "info"  # measured, not gated
    assert f"all {len(gated)} thresholds pass" in out


def test_the_repositorys_thresholds_fail_50_ms_more_per_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path, extra_job_ms=EXTRA_JOB_MS)
    write_micro(tmp_path, extra_job_ms=EXTRA_JOB_MS)
    assert gate(tmp_path, REPO / DEFAULT_THRESHOLDS) == 1
    out = capsys.readouterr().out
    rows = table_rows(out)
    failed = {metric for metric, row in rows.items() if row[2] == "FAIL"}
    assert {
        "job_vs_pipeline",
        "queued_overhead_vs_inline_overhead",
        "queued_w1_throughput_vs_capacity",
        "queued_w8_throughput_vs_capacity",
    } <= failed
    assert "sync_threadpool_r6_p50_vs_service" not in failed  # the inline path was not touched
    assert rows["job_vs_pipeline"] == ["<= 1.5", "27.316", "FAIL"]
    assert f"{len(failed)} of" in out and "system/jobs.py added work" in out  # the reason of a failed row


def test_a_threshold_whose_metric_was_not_measured_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path)
    write_micro(tmp_path)
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(
        '[queued_w16_throughput_vs_capacity]\nmin = 0.9\nreason = "16 workers"\n'
        '[job_vs_pipeline]\nmax = 1.3\nreason = "job"\n'
    )
    assert gate(tmp_path, thresholds) == 1
    rows = table_rows(capsys.readouterr().out)
    assert rows["queued_w16_throughput_vs_capacity"] == [">= 0.9", "-", "MISSING"]
    assert rows["job_vs_pipeline"][2] == "pass"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[a]\nmin = 1\nmax = 2\nreason = "x"\n', "exactly one of"),
        ("[a]\nmin = 1\n", "reason"),
        ("", "no thresholds"),
        ("[a\n", "thresholds.toml"),
    ],
)
def test_a_bad_thresholds_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_thresholds(path)


def test_missing_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs").mkdir()
    write_micro(tmp_path)
    assert gate(tmp_path, REPO / DEFAULT_THRESHOLDS) == 2
    assert "no run folder" in capsys.readouterr().err
