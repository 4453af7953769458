from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from loadtests.sweep.profile import Cell
from loadtests.sweep.samples import Sample, read_samples, write_samples
from loadtests.sweep.summary import (
    SUMMARY_COLUMNS,
    Slo,
    SloError,
    cpu_limit,
    ideal_rps,
    percentile,
    summarize,
    write_summary,
)

QUEUED = Cell(
    index=1,
    cell_id="01-queued",
    architecture="queued",
    mode="longpoll",
    load="closed",
    workers=4,
    users=12,
    rate=None,
    duration_s=10.0,
    warmup_s=2.0,
    deadline_s=5.0,
    service_time_ms=250.0,
)


def e2e(latency_ms: float, outcome: str = "ok", status: int = 200, t: float = 3.0) -> Sample:
    return Sample(t, "queued", "longpoll", "e2e", latency_ms, outcome, status, 10.0, 250.0, 1)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_timeouts_count_as_the_deadline_and_are_never_dropped() -> None:
    samples = [e2e(100.0) for _ in range(90)] + [e2e(5000.0, "timeout", 0) for _ in range(10)]
    row = summarize(QUEUED, samples)
    assert (row["requests"], row["ok"], row["timeouts"], row["errors"]) == (100, 90, 10, 0)
    assert row["timeout_rate"] == 0.1
    assert row["p50_ms"] == 100.0
    assert row["p95_ms"] == 5000.0 and row["p99_ms"] == 5000.0 and row["max_ms"] == 5000.0
    assert row["throughput_rps"] == 9.0  # 90 ok in 10 s: timeouts are not throughput


def test_a_timeout_recorded_short_still_counts_as_the_deadline() -> None:
    """A 504 from the server's own deadline may arrive a little early; it still counts as the deadline."""
    row = summarize(QUEUED, [e2e(100.0), e2e(4990.0, "timeout", 504)])
    assert row["max_ms"] == 5000.0 and row["timeouts"] == 1


def test_errors_are_counted_in_latency_but_not_in_throughput() -> None:
    samples = [e2e(200.0) for _ in range(8)] + [e2e(30.0, "error", 503), e2e(40.0, "error", 0)]
    row = summarize(QUEUED, samples)
    assert (row["requests"], row["ok"], row["errors"], row["timeouts"]) == (10, 8, 2, 0)
    assert row["throughput_rps"] == 0.8
    assert row["p50_ms"] == 200.0 and row["mean_ms"] == pytest.approx((8 * 200 + 70) / 10)


def test_submit_probe_and_queue_figures_come_from_their_own_rows() -> None:
    samples = [e2e(300.0)]
    samples += [replace(e2e(float(ms)), kind="submit", queue_wait_ms=None, run_ms=None, polls=None)
                for ms in range(1, 101)]  # fmt: skip
    samples += [Sample(3.0, "queued", "longpoll", "probe", 2.0, "ok", 200) for _ in range(5)]
    samples.append(Sample(4.0, "queued", "longpoll", "probe", 5000.0, "timeout", 0))
    row = summarize(QUEUED, samples)
    assert row["requests"] == 1
    assert row["submit_p99_ms"] == 99.0
    assert row["probe_p99_ms"] == 5000.0 and row["probe_timeouts"] == 1
    assert row["mean_queue_wait_ms"] == 10.0 and row["mean_run_ms"] == 250.0 and row["mean_polls"] == 1.0


def test_throughput_uses_completions_when_given() -> None:
    row = summarize(QUEUED, [e2e(100.0)] * 5, completed_ok=150)
    assert row["throughput_rps"] == 15.0 and row["offered_rps"] == 0.5


def test_ideal_rps_server_and_client_bounds() -> None:
    assert ideal_rps(QUEUED) == (pytest.approx(16.0), "server")  # 4 / 0.25 s; 12 users allow 48
    few_users = replace(QUEUED, users=2)
    assert ideal_rps(few_users) == (pytest.approx(8.0), "client")
    open_loop = replace(QUEUED, load="open", users=None, rate=10.0)
    assert ideal_rps(open_loop) == (10.0, "client")
    sync = replace(QUEUED, architecture="sync", mode="threadpool", workers=None, concurrency=8, users=100)
    assert ideal_rps(sync) == (pytest.approx(32.0), "server")
    asyncio = replace(sync, mode="asyncio", concurrency=None, users=20)
    assert ideal_rps(asyncio) == (pytest.approx(80.0), "client")  # upstream-bound: users / S


def test_ideal_rps_is_the_configured_upstream_time_alone() -> None:
    """A measured overhead (even one a slowdown inflated) never moves the ideal; it is shown beside it."""
    slowed = replace(QUEUED, overhead_ms=50.0)
    assert ideal_rps(slowed) == ideal_rps(QUEUED) == (pytest.approx(16.0), "server")
    row = summarize(slowed, [e2e(100.0)] * 5, completed_ok=140)  # 14 req/s done by 4 workers
    assert row["throughput_ratio"] == pytest.approx(14 / 16) and row["overhead_ms"] == 50.0


def test_open_loop_ideal_uses_the_arrivals_actually_offered() -> None:
    open_loop = replace(QUEUED, load="open", users=None, rate=10.0)
    row = summarize(open_loop, [e2e(100.0)] * 120)  # 12 arrivals/s happened in the 10 s window, not 10
    assert row["offered_rps"] == 12.0 and row["ideal_rps"] == 12.0 and row["ideal_bound"] == "client"


def test_without_a_known_upstream_there_is_no_ideal() -> None:
    unknown = replace(QUEUED, service_time_ms=None)
    assert ideal_rps(unknown) == (None, "unknown")
    row = summarize(unknown, [e2e(100.0)])
    assert row["ideal_rps"] is None and row["throughput_ratio"] is None


def test_goodput_counts_requests_within_the_slo() -> None:
    samples = [e2e(500.0) for _ in range(6)] + [e2e(2500.0) for _ in range(3)] + [e2e(5000.0, "timeout", 0)]
    default = summarize(QUEUED, samples)  # SLO = the deadline: every ok request
    assert (default["slo_e2e_ms"], default["slo_ok"], default["slo_attainment"]) == (5000.0, 9, 0.9)
    tight = summarize(QUEUED, samples, slo=Slo(e2e_ms=2000.0))
    assert (tight["slo_ok"], tight["slo_attainment"], tight["goodput_rps"]) == (6, 0.6, 0.6)
    # a submit SLO (queued): a request whose submit was slow misses it, joined by the request's name
    named = [replace(s, request=f"a0.{i}") for i, s in enumerate(samples)]
    slow_submit = replace(named[0], kind="submit", latency_ms=300.0)
    row = summarize(QUEUED, [*named, slow_submit], slo=Slo(submit_ms=200.0))
    assert row["slo_ok"] == 8 and row["slo_submit_ms"] == 200.0


def test_slo_parsing() -> None:
    assert Slo.parse("e2e=2s,submit=200ms") == Slo(2000.0, 200.0)
    assert Slo.parse("") == Slo() and Slo.parse("submit=50ms") == Slo(None, 50.0)
    for bad in ("e2e", "p99=2s", "e2e=2"):
        with pytest.raises(SloError):
            Slo.parse(bad)
    assert Slo(e2e_ms=9000.0).e2e_for(QUEUED) == 5000.0  # never looser than the deadline


def test_testbed_limit_from_a_busy_single_process_or_a_busy_machine() -> None:
    sync = replace(QUEUED, architecture="sync", mode="asyncio", workers=None, processes=1)
    busy_baseline = [{"t": 3.0, "cpu_baseline": 91.0, "cpu_api": 1.0, "cpu_machine": 120.0}]
    found = cpu_limit(sync, busy_baseline, cores=2)
    assert (
        found["busiest_process"] == "baseline"
        and found["testbed_limited"] == "baseline process at 91 % of a core"
    )
    two_processes = replace(sync, processes=2)  # two processes share the 91 %: neither is at its limit
    assert cpu_limit(two_processes, busy_baseline, cores=2)["testbed_limited"] == ""
    busy_machine = [{"t": 3.0, "cpu_api": 40.0, "cpu_machine": 185.0}]
    assert cpu_limit(QUEUED, busy_machine, cores=2)["testbed_limited"] == "machine at 185 % of 200 %"
    calm = [{"t": 3.0, "cpu_api": 40.0, "cpu_machine": 120.0}]
    row = summarize(QUEUED, [e2e(1.0)], calm, cores=2)
    assert (
        row["testbed_limited"] == "" and row["cpu_machine_pct"] == 120.0 and row["busiest_process"] == "api"
    )


def test_generator_cpu_is_averaged_over_the_window_and_flagged() -> None:
    rows = [
        {"t": 1.0, "cpu_generator": 100.0, "queue_depth": 50},  # warm-up: ignored
        {"t": 3.0, "cpu_generator": 85.0, "queue_depth": 3, "busy_workers": 4},
        {"t": 3.5, "cpu_generator": 95.0, "queue_depth": 7, "busy_workers": 4},
    ]
    row = summarize(QUEUED, [e2e(100.0)], rows)
    assert row["generator_cpu_pct"] == 90.0 and row["generator_saturated"] is True
    assert row["max_queue_depth"] == 7 and row["mean_busy_workers"] == 4.0
    calm = summarize(QUEUED, [e2e(100.0)], [{"t": 3.0, "cpu_generator": 20.0}])
    assert calm["generator_saturated"] is False


def test_open_loop_late_arrivals_mean_the_pool_was_exhausted() -> None:
    open_loop = replace(QUEUED, load="open", users=None, rate=10.0)
    assert summarize(open_loop, [e2e(1.0)], late_arrivals=3)["pool_exhausted"] is True
    assert summarize(open_loop, [e2e(1.0)], late_arrivals=0)["pool_exhausted"] is False
    assert summarize(QUEUED, [e2e(1.0)])["pool_exhausted"] is None


def test_empty_cell_summarises_without_crashing() -> None:
    row = summarize(QUEUED, [])
    assert row["requests"] == 0 and row["p99_ms"] is None and row["throughput_rps"] == 0.0


def test_samples_and_summary_round_trip(tmp_path: Path) -> None:
    samples = [e2e(12.5), replace(e2e(5000.0, "timeout", 0), queue_wait_ms=None, run_ms=None, polls=3)]
    write_samples(tmp_path / "samples.csv", samples)
    header = (tmp_path / "samples.csv").read_text().splitlines()[0]
    assert header == "t,architecture,mode,kind,latency_ms,outcome,status,queue_wait_ms,run_ms,polls,request"
    assert read_samples(tmp_path / "samples.csv") == samples
    write_summary(tmp_path / "summary.csv", [summarize(QUEUED, samples)])
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0].split(",") == list(SUMMARY_COLUMNS) and len(lines) == 2


def test_queued_cells_name_their_engine_and_jobs_per_worker() -> None:
    sync = replace(QUEUED, architecture="sync", mode="asyncio", workers=None)
    saq = replace(QUEUED, users=400, engine="saq", concurrency=32)  # a saq cell's concurrency: C per process
    rows = {
        name: summarize(cell, [e2e(100.0)]) for name, cell in (("rq", QUEUED), ("sync", sync), ("saq", saq))
    }
    assert (rows["rq"]["engine"], rows["rq"]["jobs_per_worker"]) == ("rq", 1)
    assert (rows["sync"]["engine"], rows["sync"]["jobs_per_worker"]) == (None, None)
    assert (rows["saq"]["engine"], rows["saq"]["jobs_per_worker"]) == ("saq", 32)
    # W × C jobs in flight / S: 4 × 32 / 0.25 s (the users, 400 / 0.25 s, are not the lower bound)
    assert ideal_rps(saq) == (pytest.approx(512.0), "server")
    assert ideal_rps(QUEUED) == (pytest.approx(16.0), "server")


def test_memory_is_the_windows_mean_and_empty_when_not_sampled(tmp_path: Path) -> None:
    server = [
        {"t": 1.0, "rss_worker_process_mb": 500.0, "rss_workers_mb": 9000.0},  # warm-up: left out
        {"t": 3.0, "rss_worker_process_mb": 120.0, "rss_workers_mb": 520.0, "processes_workers": 4},
        {"t": 4.0, "rss_worker_process_mb": 130.0, "rss_workers_mb": 560.0, "processes_workers": 4},
        {"t": 5.0, "rss_api_process_mb": 80.0},
    ]
    row = summarize(QUEUED, [e2e(100.0)], server)
    assert row["rss_worker_mb"] == 125.0 and row["rss_workers_total_mb"] == 540.0
    assert row["worker_processes"] == 4.0 and row["rss_api_mb"] == 80.0
    assert row["rss_baseline_mb"] is None and row["rss_baseline_total_mb"] is None
    inline = summarize(replace(QUEUED, architecture="sync", mode="asyncio", workers=None), [e2e(1.0)], server)
    assert inline["rss_worker_mb"] is None and inline["rss_api_mb"] is None  # idle roles: not the cell's
    write_summary(tmp_path / "summary.csv", [row])
    header, values = (tmp_path / "summary.csv").read_text().splitlines()
    written = dict(zip(header.split(","), values.split(","), strict=True))
    assert written["rss_baseline_mb"] == "" and written["rss_worker_mb"] == "125.0"
