from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.comparison import outcome_comparison, p99_ratio
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData, parse_summary_row
from reports.verdict import (
    baseline_timeouts,
    compute_verdict,
    generator_limits,
    ideal_closeness,
    worker_scaling,
)
from reports.verdict_text import Verdict

SERVICE = ServiceModel(mean_s=0.32, cv2=0.06, source="test")  # one worker: 3.125 req/s at most


def cell(**fields: Any) -> CellSummary:
    """A summary.csv row as the loader would parse it (values given as they appear in the CSV)."""
    row = {"cell_id": "c", "load": "closed", "requests": "100", "timeouts": "0", "errors": "0"}
    row.update({key: "" if value is None else str(value) for key, value in fields.items()})
    return parse_summary_row(row)


def sync_cell(
    users: int, timeouts: int, p99: float = 1000.0, mode: str = "threadpool", **extra: Any
) -> CellSummary:
    """A closed-loop baseline cell; 8 threads unless `concurrency` says otherwise (None: unbounded)."""
    return cell(
        cell_id=f"sync-u{users}",
        architecture="sync",
        mode=mode,
        users=users,
        timeouts=timeouts,
        p99_ms=p99,
        service_time_ms=320,
        **{"concurrency": 8, **extra},
    )


def queued_cell(workers: int, throughput: float, users: int | None = None, **extra: Any) -> CellSummary:
    users = users if users is not None else 3 * workers
    ideal = min(workers, users) / SERVICE.mean_s
    return cell(
        cell_id=f"q-w{workers}-u{users}",
        architecture="queued",
        mode="longpoll",
        workers=workers,
        users=users,
        throughput_rps=throughput,
        ideal_rps=round(ideal, 3),
        service_time_ms=320,
        **extra,
    )


def texts(verdicts: list[Verdict]) -> str:
    return "\n".join(v.text for v in verdicts)


def test_baseline_timeouts_start_at_first_load_above_one_percent() -> None:
    cells = [
        sync_cell(40, 5),
        sync_cell(10, 0),
        sync_cell(20, 1),
        sync_cell(80, 60),
    ]  # 1 % exactly is not > 1 %
    (line,) = baseline_timeouts(cells, deadline_s=30)
    assert line.supported
    assert "starts timing out at 40 users" in line.text
    assert "5.0 %" in line.text and "at 20 users: 1.0 %" in line.text
    assert "30 s deadline" in line.text


def test_baseline_timeouts_per_mode_and_none_seen() -> None:
    cells = [sync_cell(10, 0), sync_cell(20, 0), sync_cell(10, 30, mode="blocking")]
    blocking, threadpool = baseline_timeouts(cells, deadline_s=None)
    assert blocking.text.startswith("sync/blocking, closed loop: starts timing out at 10 users")
    assert "already at the lowest load tested" in blocking.text
    assert threadpool.text.startswith("sync/threadpool, closed loop: no load tested produced more than 1 %")
    assert "(up to 20 users)" in threadpool.text


def test_baseline_timeouts_without_baseline_cells_cannot_say() -> None:
    (line,) = baseline_timeouts([queued_cell(2, 6.0)], deadline_s=30)
    assert not line.supported
    assert "cannot say" in line.text


def test_baseline_cells_without_requests_are_not_evidence() -> None:
    (line,) = baseline_timeouts([cell(architecture="sync", mode="blocking", users=8, requests=0)], 30)
    assert not line.supported


def test_p99_ratio_at_highest_common_load() -> None:
    cells = [
        sync_cell(24, 0, p99=3000.0),
        sync_cell(48, 0, p99=6000.0),
        sync_cell(96, 0, p99=9000.0),  # no queued cell at 96 users
        queued_cell(8, 24.0, users=24, p99_ms=1500.0),
        queued_cell(16, 48.0, users=48, p99_ms=1500.0),
        queued_cell(4, 12.0, users=48, p99_ms=4500.0),  # fewer workers at the same load: not the one compared
    ]
    (line,) = p99_ratio(cells, deadline_s=30)
    assert line.supported
    assert "At 48 users (closed loop)" in line.text
    assert "16 workers has a p99 0.25×" in line.text


def test_p99_ratio_cannot_compare_without_common_load_or_architecture() -> None:
    (no_common,) = p99_ratio([sync_cell(10, 0), queued_cell(2, 6.0, users=7, p99_ms=900.0)], 30)
    assert not no_common.supported and "cannot compare" in no_common.text
    (no_sync,) = p99_ratio([queued_cell(2, 6.0, p99_ms=900.0)], 30)
    assert not no_sync.supported and "sync" in no_sync.text


def test_p99_ratio_notes_different_capacities_and_capped_tails() -> None:
    cells = [sync_cell(24, 50, p99=30000.0), queued_cell(2, 6.0, users=24, p99_ms=12000.0)]
    (line,) = p99_ratio(cells, deadline_s=30)
    assert "capacities differ" in line.text  # 2 workers vs 8 threads
    assert "sits at the deadline" in line.text


def open_cell(
    architecture: str, rate: float, requests: int, timeouts: int, ok_rps: float, **extra: Any
) -> CellSummary:
    """An open-loop cell; server capacity = workers (queued) or concurrency (sync) / 0.32 s."""
    return cell(
        cell_id=f"{architecture}-r{rate:g}",
        architecture=architecture,
        mode=extra.pop("mode", "longpoll" if architecture == "queued" else "threadpool"),
        load="open",
        rate=rate,
        requests=requests,
        timeouts=timeouts,
        throughput_rps=ok_rps,
        offered_rps=extra.pop("offered_rps", rate),
        p99_ms=8000.0,
        service_time_ms=320,
        **extra,
    )


def test_outcomes_compare_timeouts_and_throughput_where_p99_is_capped_at_the_deadline() -> None:
    cells = [
        open_cell("queued", 36, requests=512, timeouts=24, ok_rps=24.4, workers=8),
        open_cell(
            "sync", 36, requests=541, timeouts=464, ok_rps=10.73, processes=1, threads=8, concurrency=8
        ),
    ]
    (line,) = outcome_comparison(cells)
    assert line.supported
    assert line.text.startswith(
        "At 36 req/s (open loop), queued/longpoll with 8 workers timed out 4.7 % of requests and completed "
        "24.4 req/s; sync/threadpool (p1 t8) timed out 85.8 % and completed 10.7 req/s"
    )
    assert "queued system completed 2.3× the baseline's throughput" in line.text
    assert "Both can serve about 25.0 req/s at most" in line.text  # 8 / 0.32 s on both sides
    # Both p99s sit at the deadline: the p99 line must not rank them (no "1.00×, equal").
    (p99_line,) = p99_ratio(cells, deadline_s=8)
    assert "p99 cannot rank them" in p99_line.text and "×" not in p99_line.text


def test_throughput_of_a_side_whose_every_request_timed_out_is_explained() -> None:
    cells = [
        open_cell("queued", 24, requests=242, timeouts=151, ok_rps=12.5, workers=4),
        open_cell("sync", 24, requests=263, timeouts=263, ok_rps=3.1, concurrency=4),
    ]
    (line,) = outcome_comparison(cells)
    assert (
        "Every inline request sent in the window timed out: its 3.1 req/s are answers to requests sent "
        in (line.text)
    )
    assert "Every queued request" not in line.text


def test_outcomes_skip_loads_where_both_sides_kept_up() -> None:
    cells = [
        open_cell("queued", 12, requests=192, timeouts=0, ok_rps=12.1, workers=8),
        open_cell("sync", 12, requests=180, timeouts=1, ok_rps=11.6, concurrency=8),  # 0.6 % timeouts
        # 24 % apart, but only because Poisson arrivals offered 24 % more: both served what came.
        open_cell("queued", 6, requests=96, timeouts=0, ok_rps=6.5, offered_rps=6.4, workers=8),
        open_cell("sync", 6, requests=78, timeouts=0, ok_rps=5.25, offered_rps=5.2, concurrency=8),
    ]
    assert outcome_comparison(cells) == []


def test_outcomes_show_closed_loop_throughput_gap_and_different_capacities() -> None:
    sync = cell(
        architecture="sync",
        mode="threadpool",
        users=48,
        throughput_rps=22.1,
        concurrency=8,
        service_time_ms=320,
    )  # 8 threads: half the capacity of 16 workers
    cells = [queued_cell(16, 47.0, users=48), sync]
    (line,) = outcome_comparison(cells)
    assert line.text.startswith("At 48 users (closed loop), queued/longpoll with 16 workers timed out 0.0 %")
    assert "completed 2.1× the baseline's throughput" in line.text
    assert "capacities differ (50.0 vs 25.0 req/s)" in line.text


def test_outcomes_prefer_equal_capacity_and_print_one_line_per_load() -> None:
    cells = [
        open_cell("queued", 36, requests=500, timeouts=0, ok_rps=36.0, workers=16),
        open_cell("queued", 36, requests=500, timeouts=30, ok_rps=24.0, workers=8),
        open_cell("sync", 36, requests=500, timeouts=400, ok_rps=10.0, concurrency=8),
        open_cell("sync", 36, requests=500, timeouts=300, ok_rps=14.0, concurrency=4, mode="blocking"),
    ]
    (line,) = outcome_comparison(cells)
    assert "queued/longpoll with 8 workers timed out 6.0 %" in line.text
    assert "sync/threadpool timed out 80.0 %" in line.text
    assert "Both can serve about 25.0 req/s" in line.text


def test_outcomes_cannot_compare_without_common_load_or_architecture() -> None:
    cells = [
        open_cell("queued", 36, requests=500, timeouts=30, ok_rps=24.0, workers=8),
        open_cell("sync", 24, requests=500, timeouts=300, ok_rps=10.0, concurrency=8),
    ]
    (line,) = outcome_comparison(cells)
    assert not line.supported
    assert line.text == (
        "Open loop: no load level was run on both architectures: cannot compare timeouts and throughput."
    )
    (no_sync,) = outcome_comparison(cells[:1])
    assert not no_sync.supported and "No measured sync cells" in no_sync.text


def test_scaling_stop_detected_where_marginal_gain_drops_below_ten_percent() -> None:
    cells = [queued_cell(1, 3.0), queued_cell(2, 6.1), queued_cell(4, 12.2), queued_cell(8, 12.9)]
    (line,) = worker_scaling(cells, SERVICE)
    assert line.supported
    assert "stops scaling after 4 workers" in line.text
    assert (
        "each extra worker buys 3.06 req/s" in line.text
    )  # least squares over 1, 2, 4 workers: 14.3 / 4.667


def test_scaling_continues_to_largest_count() -> None:
    cells = [queued_cell(w, 3.0 * w) for w in (1, 2, 4, 8)]
    (line,) = worker_scaling(cells, SERVICE)
    assert "still scaling at 8 workers" in line.text
    assert "each extra worker buys 3.00 req/s" in line.text


def test_scaling_stop_blamed_on_load_when_the_cell_was_client_bound() -> None:
    cells = [queued_cell(2, 6.0), queued_cell(4, 12.0), queued_cell(8, 12.3, users=4)]
    (line,) = worker_scaling(cells, SERVICE)
    assert "stops scaling after 4 workers" in line.text
    assert "the stop may be the load's" in line.text


def test_scaling_cannot_say_with_one_worker_count_or_no_queued_cells() -> None:
    (one,) = worker_scaling([queued_cell(4, 12.0), queued_cell(4, 11.0, users=6)], SERVICE)
    assert not one.supported and "cannot say" in one.text
    (none,) = worker_scaling([sync_cell(10, 0)], SERVICE)
    assert not none.supported


def test_ideal_closeness_uses_highest_load_and_flags_impossible_rates() -> None:
    cells = [queued_cell(2, 6.1), queued_cell(4, 10.0), queued_cell(4, 3.0, users=1), queued_cell(8, 30.0)]
    (line,) = ideal_closeness(cells)
    assert "80 % (4 workers)" in line.text  # the 12-user cell, not the 1-user one
    assert "below 90 % of ideal at 4 workers" in line.text
    assert "Above 110 % at 8 workers" in line.text


def test_generator_saturation_from_cpu_even_without_the_flag_column() -> None:
    flagged = generator_limits(
        [queued_cell(2, 6.0, generator_cpu_pct=91), queued_cell(4, 12.0, generator_cpu_pct=20)]
    )
    assert (
        flagged.supported and "1 cell(s) were generator-limited" in flagged.text and "q-w2-u6" in flagged.text
    )
    fine = generator_limits([queued_cell(2, 6.0, generator_cpu_pct=35.5)])
    assert "No cell was generator-limited" in fine.text and "36 %" in fine.text
    unknown = generator_limits([queued_cell(2, 6.0)])
    assert not unknown.supported


def test_compute_verdict_survives_empty_and_all_timeout_cells(tmp_path: Path) -> None:
    cells = [
        cell(cell_id="empty", architecture="sync", mode="blocking", users=4, requests=0),
        cell(
            cell_id="dead",
            architecture="sync",
            mode="blocking",
            users=8,
            requests=20,
            timeouts=20,
            p99_ms=30000,
        ),
        queued_cell(2, 6.0),
    ]
    verdicts = compute_verdict(RunData(run_dir=tmp_path, config={}, meta={}, cells=cells))
    joined = texts(verdicts)
    assert "Cell empty recorded no requests" in joined
    assert "Cell dead: every request timed out" in joined
    assert "starts timing out at 8 users" in joined
    assert compute_verdict(RunData(run_dir=tmp_path, config={}, meta={}, cells=[]))[0].supported is False
