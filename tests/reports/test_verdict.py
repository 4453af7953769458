from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reports.comparison import compare, outcome_comparison, p99_ratio
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData, aggregate, parse_summary_row
from reports.significance import Outcome
from reports.verdict import (
    baseline_timeouts,
    compute_verdict,
    generator_limits,
    ideal_closeness,
    limited_by_testbed,
    worker_scaling,
)
from reports.verdict_text import Verdict

SERVICE = ServiceModel(mean_s=0.32, cv2=0.06, source="test")  # one worker: 3.125 req/s at most
SEEDS = (101, 202, 303)  # trial k of every cell at one load shares a seed (common random numbers)


def cell(**fields: Any) -> CellSummary:
    """A summary.csv row as the loader would parse it (values given as they appear in the CSV)."""
    row = {"cell_id": "c", "load": "closed", "requests": "100", "timeouts": "0", "errors": "0"}
    row.update({key: "" if value is None else str(value) for key, value in fields.items()})
    return parse_summary_row(row)


def trials(per_trial: Sequence[dict[str, Any]], **fields: Any) -> CellSummary:
    """A cell of several trials: `fields` shared, one dict of values per trial, trial k under SEEDS[k]."""
    name = str(fields.pop("cell_id", "c"))
    rows = [
        cell(
            **{
                **fields,
                **values,
                "cell_id": f"{name}-trial{k}",
                "cell": name,
                "trial": k,
                "seed": SEEDS[k - 1],
            }
        )
        for k, values in enumerate(per_trial, start=1)
    ]
    return aggregate(rows)


def sync_cell(
    users: int, timeouts: int, p99: float = 1000.0, mode: str = "threadpool", **extra: Any
) -> CellSummary:
    """A closed-loop baseline cell of 3 trials of 400 requests; `timeouts` per trial; 8 threads unless
    `concurrency` says otherwise (None: unbounded)."""
    throughput = extra.pop("throughput_rps", 20.0)
    return trials(
        [{"timeouts": timeouts, "throughput_rps": throughput + d} for d in (-0.2, 0.0, 0.2)],
        cell_id=f"sync-u{users}",
        architecture="sync",
        mode=mode,
        users=users,
        requests=400,
        p99_ms=p99,
        service_time_ms=320,
        **{"concurrency": 8, **extra},
    )


def queued_cell(
    workers: int, throughput: float, users: int | None = None, spread: float = 0.05, **extra: Any
) -> CellSummary:
    """A closed-loop queued cell of 3 trials at `throughput` ± spread (req/s)."""
    users = users if users is not None else 3 * workers
    ideal = extra.pop("ideal_rps", round(min(workers, users) / SERVICE.mean_s, 3))
    return trials(
        [{"throughput_rps": throughput + d, "ideal_rps": ideal} for d in (-spread, 0.0, spread)],
        cell_id=f"q-w{workers}-u{users}",
        architecture="queued",
        mode="longpoll",
        workers=workers,
        users=users,
        service_time_ms=320,
        **extra,
    )


def open_cell(
    architecture: str,
    rate: float,
    timeouts: Sequence[int],
    ok_rps: Sequence[float],
    requests: int = 500,
    **extra: Any,
) -> CellSummary:
    """An open-loop cell, one trial per entry of `timeouts` / `ok_rps`; capacity = workers (queued) or
    concurrency (sync) / 0.32 s. Both sides of a pair get the same offered arrivals (CRN)."""
    offered = extra.pop("offered_rps", rate)
    return trials(
        [
            {"timeouts": t, "throughput_rps": r, "offered_rps": offered, "requests": requests}
            for t, r in zip(timeouts, ok_rps, strict=True)
        ],
        cell_id=f"{architecture}-r{rate:g}",
        architecture=architecture,
        mode=extra.pop("mode", "longpoll" if architecture == "queued" else "threadpool"),
        load="open",
        rate=rate,
        p99_ms=extra.pop("p99_ms", 8000.0),
        service_time_ms=320,
        duration_s=15,
        **extra,
    )


def texts(verdicts: list[Verdict]) -> str:
    return "\n".join(v.text for v in verdicts)


# ---- baseline timeouts ------------------------------------------------------------------------------------


def test_baseline_timeouts_start_where_the_wilson_interval_lies_above_one_percent() -> None:
    cells = [sync_cell(10, 0), sync_cell(20, 2), sync_cell(40, 20), sync_cell(80, 240)]
    (line,) = baseline_timeouts(cells, deadline_s=30)
    assert line.supported
    # 6 of 1200 (0.5 %): its interval reaches above 1 %, so it is neither "timing out" nor "clearly not"
    assert (
        "starts timing out at 40 users — 5.0 % [3.9, 6.4] of requests passed the 30 s deadline" in line.text
    )
    assert "at 20 users: 0.5 % [0.2, 1.1]" in line.text
    assert "Cannot tell whether timeouts exceed 1 % at 20 users" in line.text


def test_baseline_timeouts_per_mode_and_none_clearly_above() -> None:
    cells = [sync_cell(10, 0), sync_cell(20, 0), sync_cell(10, 30, mode="blocking")]
    blocking, threadpool = baseline_timeouts(cells, deadline_s=None)
    assert blocking.text.startswith("sync/blocking, closed loop: starts timing out at 10 users")
    assert "already at the lowest load tested" in blocking.text
    assert threadpool.text.startswith(
        "sync/threadpool, closed loop: no load tested had timeouts clearly above 1 %"
    )
    assert "(up to 20 users; highest 0.0 % [0.0, 0.3]" in threadpool.text


def test_baseline_timeouts_without_baseline_cells_cannot_say() -> None:
    (line,) = baseline_timeouts([queued_cell(2, 6.0)], deadline_s=30)
    assert not line.supported and "cannot say" in line.text
    (empty,) = baseline_timeouts([cell(architecture="sync", mode="blocking", users=8, requests=0)], 30)
    assert not empty.supported


# ---- p99 --------------------------------------------------------------------------------------------------


def test_p99_line_at_highest_common_load_says_it_cannot_rank_without_intervals() -> None:
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
    assert "At 48 users (closed loop), queued/longpoll with 16 workers has a p99 of" in line.text
    assert "ratio 0.25×; cannot tell which is lower from this run" in line.text  # summary rows only


def with_latencies(cell: CellSummary, latencies: Sequence[float]) -> CellSummary:
    """The cell as if each trial's samples.csv held `latencies`."""
    return aggregate([replace(trial, latencies_ms=tuple(latencies)) for trial in cell.runs])


def test_p99_line_ranks_only_when_the_order_statistic_intervals_part() -> None:
    queued = with_latencies(queued_cell(8, 24.0, users=24), [200.0 + i % 50 for i in range(200)])
    sync = with_latencies(sync_cell(24, 0), [900.0 + i % 50 for i in range(200)])
    assert queued.stats.trials == 3 and queued.stats.requests == 300  # the rows' counts, pooled
    (line,) = p99_ratio([queued, sync], deadline_s=30)
    assert "has a p99 of 249 ms [" in line.text and "lower: the intervals do not overlap" in line.text
    close = with_latencies(sync_cell(24, 0), [200.0 + i % 50 for i in range(200)])
    (overlapping,) = p99_ratio([queued, close], deadline_s=30)
    assert "cannot tell which is lower" in overlapping.text


def test_p99_cannot_compare_without_common_load_or_architecture() -> None:
    (no_common,) = p99_ratio([sync_cell(10, 0), queued_cell(2, 6.0, users=7, p99_ms=900.0)], 30)
    assert not no_common.supported and "cannot compare" in no_common.text
    (no_sync,) = p99_ratio([queued_cell(2, 6.0, p99_ms=900.0)], 30)
    assert not no_sync.supported and "sync" in no_sync.text


def test_p99_notes_different_capacities_and_capped_tails() -> None:
    cells = [sync_cell(24, 50, p99=30000.0), queued_cell(2, 6.0, users=24, p99_ms=12000.0)]
    (line,) = p99_ratio(cells, deadline_s=30)
    assert "capacities differ" in line.text  # 2 workers vs 8 threads
    assert "sits at the deadline" in line.text


# ---- queued vs inline outcomes ----------------------------------------------------------------------------


def overload_pair() -> list[CellSummary]:
    return [
        open_cell("queued", 36, [24, 30, 20], [24.4, 24.1, 24.6], workers=8),
        open_cell("sync", 36, [464, 470, 455], [10.7, 10.2, 11.0], concurrency=8, processes=1, threads=8),
    ]


def test_queued_better_when_paired_differences_exclude_zero_and_pass_the_margins() -> None:
    queued, sync = overload_pair()
    pair = compare(queued, sync)
    assert pair.winner == "queued" and not pair.alike
    timeouts = next(m for m in pair.measures if m.name == "timeouts")
    assert timeouts.decision.outcome is Outcome.BELOW and timeouts.better == "queued"
    (line,) = outcome_comparison([queued, sync])
    assert line.text.startswith(
        "At 36 req/s (open loop, 3 trials), queued/longpoll with 8 workers timed out 4.9 % [3.9, 6.1] of "
        "requests and completed 24.4 req/s [23.7, 25.0]; sync/threadpool (p1 t8) timed out 92.6 %"
    )
    assert "Queued minus inline: timeouts -87.7 points [" in line.text
    assert "the queued system did better." in line.text
    assert "Both can serve about 25.0 req/s at most" in line.text


def test_alike_only_when_every_interval_lies_inside_its_margin() -> None:
    queued = open_cell("queued", 12, [0, 0, 0], [12.0, 11.9, 12.1], workers=8)
    sync = open_cell("sync", 12, [0, 0, 0], [11.9, 11.8, 12.1], concurrency=8)
    assert compare(queued, sync).alike
    (line,) = outcome_comparison([queued, sync])
    assert "they did alike" in line.text


def test_cannot_tell_when_an_interval_straddles_zero_or_the_margin_and_says_what_would_decide() -> None:
    queued = open_cell("queued", 20, [0, 30, 5], [19.0, 16.0, 19.5], workers=8)  # noisy trials
    sync = open_cell("sync", 20, [10, 5, 40], [18.0, 19.0, 15.0], concurrency=8)
    pair = compare(queued, sync)
    assert pair.winner is None and not pair.alike and pair.undecided
    (line,) = outcome_comparison([queued, sync])
    assert (
        "cannot tell from this run (about " in line.text and "more trials per cell would decide" in line.text
    )


def test_without_shared_seeds_the_difference_is_unpaired() -> None:
    queued = open_cell("queued", 36, [24, 30, 20], [24.4, 24.1, 24.6], workers=8)
    single = cell(architecture="sync", mode="threadpool", load="open", rate=36, requests=500, timeouts=460,
                  throughput_rps=10.5, offered_rps=36, concurrency=8, service_time_ms=320)  # fmt: skip
    pair = compare(queued, single)  # one unseeded trial: Welch, which needs two on each side
    assert all(m.decision.interval.method == "Welch t" for m in pair.measures)
    assert pair.winner is None and "second trial" in pair.more_trials()


def test_outcomes_show_closed_loop_throughput_gap_and_different_capacities() -> None:
    sync = sync_cell(48, 0, throughput_rps=22.1)  # 8 threads: half the capacity of 16 workers
    (line,) = outcome_comparison([queued_cell(16, 47.0, users=48), sync])
    assert line.text.startswith("At 48 users (closed loop, 3 trials), queued/longpoll with 16 workers")
    assert "throughput +24.9 req/s [" in line.text and "the queued system did better" in line.text
    assert "capacities differ (50.0 vs 25.0 req/s)" in line.text


def test_outcomes_prefer_equal_capacity_and_cannot_compare_without_a_common_load() -> None:
    cells = [
        open_cell("queued", 36, [0, 0, 0], [36.0, 36.0, 36.0], workers=16),
        *overload_pair(),
        open_cell("sync", 36, [300, 310, 290], [14.0, 14.0, 14.0], concurrency=4, mode="blocking"),
    ]
    (line,) = outcome_comparison(cells)
    assert "queued/longpoll with 8 workers" in line.text and "sync/threadpool (p1 t8)" in line.text
    apart = [overload_pair()[0], open_cell("sync", 24, [300] * 3, [10.0] * 3, concurrency=8)]
    (none,) = outcome_comparison(apart)
    assert not none.supported and "no load level was run on both architectures" in none.text
    (no_sync,) = outcome_comparison(apart[:1])
    assert not no_sync.supported and "No measured sync cells" in no_sync.text


def test_a_side_whose_every_request_timed_out_is_explained_and_testbed_limits_named() -> None:
    cells = [
        open_cell("queued", 24, [151, 150, 149], [12.5, 12.4, 12.6], requests=242, workers=4),
        open_cell(
            "sync",
            24,
            [263] * 3,
            [3.1, 3.0, 3.2],
            requests=263,
            concurrency=4,
            testbed_limited="baseline process at 93 % of a core",
        ),  # fmt: skip
    ]
    (line,) = outcome_comparison(cells)
    assert "Every inline request sent in the window timed out: its 3.1 req/s are answers" in line.text
    assert "Every queued request" not in line.text
    assert "Testbed-limited: inline (baseline process at 93 % of a core)" in line.text


# ---- workers ----------------------------------------------------------------------------------------------


def test_still_scaling_only_when_the_last_step_clearly_adds_more_than_the_margin() -> None:
    cells = [queued_cell(w, 3.0 * w) for w in (1, 2, 4, 8)]
    (line,) = worker_scaling(cells, SERVICE)
    assert "each extra worker buys 3.0 req/s [" in line.text
    assert "still scaling at 8 workers, the largest count tested" in line.text


def test_scaling_stop_where_an_extra_worker_clearly_adds_almost_nothing() -> None:
    cells = [queued_cell(1, 3.0), queued_cell(2, 6.1), queued_cell(4, 12.2), queued_cell(8, 12.4)]
    (line,) = worker_scaling(cells, SERVICE)
    assert "stops scaling after 4 workers" in line.text
    assert "from 1 to 4 workers" in line.text


def test_cannot_tell_whether_scaling_continues_when_the_last_step_is_noisy() -> None:
    cells = [queued_cell(1, 3.0), queued_cell(2, 6.0), queued_cell(4, 12.0), queued_cell(8, 14.0, spread=3.0)]
    (line,) = worker_scaling(cells, SERVICE)
    assert "cannot tell whether it still scales at 8 workers" in line.text


def test_scaling_stop_blamed_on_load_when_the_cell_was_client_bound() -> None:
    cells = [queued_cell(2, 6.0), queued_cell(4, 12.0), queued_cell(8, 12.3, users=4)]
    (line,) = worker_scaling(cells, SERVICE)
    assert "stops scaling after 4 workers" in line.text and "the stop may be the load's" in line.text


def test_testbed_limited_worker_counts_stay_out_of_the_slope() -> None:
    limited = "machine at 190 % of 200 %"
    cells = [
        queued_cell(1, 3.0),
        queued_cell(2, 6.0),
        queued_cell(4, 12.0),
        queued_cell(8, 16.0, testbed_limited=limited),
    ]
    (line,) = worker_scaling(cells, SERVICE)
    assert "from 1 to 4 workers" in line.text and "still scaling at 4 workers" in line.text
    assert f"Left out as testbed-limited: 8 workers ({limited})" in line.text
    only_limited = [queued_cell(w, 2.0 * w, testbed_limited=limited) for w in (1, 2)]
    (none,) = worker_scaling(only_limited, SERVICE)
    assert not none.supported and "without a testbed limit" in none.text


def test_scaling_cannot_say_with_one_worker_count_or_no_queued_cells() -> None:
    (one,) = worker_scaling([queued_cell(4, 12.0), queued_cell(4, 11.0, users=6)], SERVICE)
    assert not one.supported and "cannot say" in one.text
    (none,) = worker_scaling([sync_cell(10, 0)], SERVICE)
    assert not none.supported


# ---- share of ideal ---------------------------------------------------------------------------------------


def test_ideal_closeness_by_interval_against_ninety_percent() -> None:
    cells = [
        queued_cell(1, 3.0),  # 96 %, tight: at least 90 %
        queued_cell(2, 5.0),  # 80 %: below
        queued_cell(4, 11.3, spread=1.0),  # 90 % ± a lot: cannot tell
        queued_cell(4, 3.0, users=1),  # not the saturation cell of 4 workers
    ]
    (line,) = ideal_closeness(cells)
    assert "96 % [92, 100] (1 worker)" in line.text and "(4 workers)" in line.text
    assert "at least 90 % of ideal at 1 worker" in line.text
    assert "below 90 % at 2 workers" in line.text
    assert "cannot tell whether 90 % is reached at 4 workers" in line.text


def test_a_cell_wholly_above_ideal_is_a_measurement_error_with_its_likely_cause() -> None:
    drew_less = queued_cell(8, 28.0, upstream_draw_ms=290.0)  # 112 % of 25 req/s, upstream drew 290 of 320
    (line,) = ideal_closeness([queued_cell(1, 3.0), drew_less])
    assert "MEASUREMENT ERROR at 8 workers" in line.text
    assert "the upstream drew 290 ms per request on average against the configured S = 320 ms" in line.text
    short_window = queued_cell(1, 3.5, duration_s=8)  # 28 completions per trial: the window's edges
    (edges,) = ideal_closeness([short_window])
    assert "MEASUREMENT ERROR at 1 worker" in edges.text and "the window's edges" in edges.text


def test_the_job_path_overhead_is_shown_beside_the_ideal() -> None:
    (line,) = ideal_closeness([queued_cell(4, 12.0, overhead_ms=8.0)])
    assert (
        "The job path's own time, 8 ms per request at zero upstream latency, caps a healthy system near 98 %"
        in line.text
    )


# ---- limits and anomalies ---------------------------------------------------------------------------------


def test_generator_saturation_from_cpu_even_without_the_flag_column() -> None:
    flagged = generator_limits(
        [queued_cell(2, 6.0, generator_cpu_pct=91), queued_cell(4, 12.0, generator_cpu_pct=20)]
    )
    assert (
        flagged.supported and "1 cell(s) were generator-limited" in flagged.text and "q-w2-u6" in flagged.text
    )
    fine = generator_limits([queued_cell(2, 6.0, generator_cpu_pct=35.5)])
    assert "No cell was generator-limited" in fine.text and "36 %" in fine.text
    assert not generator_limits([queued_cell(2, 6.0)]).supported


def test_testbed_verdict_names_the_limited_cells_or_the_busiest_machine() -> None:
    limited = limited_by_testbed([queued_cell(2, 6.0, testbed_limited="api process at 88 % of a core")])
    assert (
        "1 of 1 cell(s) were testbed-limited" in limited.text
        and "api process at 88 % of a core" in limited.text
    )
    calm = limited_by_testbed([queued_cell(2, 6.0, cpu_machine_pct=120)])
    assert "No cell was testbed-limited (busiest machine: 120 %" in calm.text
    assert not limited_by_testbed([queued_cell(2, 6.0)]).supported


def test_compute_verdict_survives_empty_and_all_timeout_cells(tmp_path: Path) -> None:
    cells = [
        cell(cell_id="empty", architecture="sync", mode="blocking", users=4, requests=0),
        cell(
            cell_id="dead",
            architecture="sync",
            mode="blocking",
            users=8,
            requests=200,
            timeouts=200,
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


def test_a_run_without_a_known_upstream_says_there_is_no_ideal(tmp_path: Path) -> None:
    run = RunData(run_dir=tmp_path, config={"upstream_known": False, "chat_latency": "const:1ms"}, meta={},
                  cells=[queued_cell(2, 6.0)])  # fmt: skip
    assert run.service_model() is None  # the profile's model never reached the upstream
    (first, *_) = compute_verdict(run)
    assert not first.supported and first.text.startswith("The upstream's latency is unknown")
