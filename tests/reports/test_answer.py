from __future__ import annotations

from reports.answer import inline_or_queued, unbounded_inline, workers_for, workers_needed
from reports.intervals import Interval
from reports.run_data import CellSummary
from tests.reports.test_verdict import SERVICE, open_cell, queued_cell, sync_cell, trials


def overloaded_pair() -> list[CellSummary]:
    """36 req/s offered to 8 workers and to 8 threads (both 25 req/s at most): the queue kept up longer."""
    return [
        open_cell("queued", 36, [24, 20, 28], [24.4, 24.1, 24.6], requests=512, workers=8),
        open_cell("sync", 36, [464, 455, 470], [10.7, 10.1, 11.2], requests=512, concurrency=8),
    ]


def kept_up_pair() -> list[CellSummary]:
    return [
        open_cell("queued", 12, [0, 0, 0], [12.1, 11.9, 12.0], requests=180, workers=8, p50_ms=313),
        open_cell("sync", 12, [0, 0, 0], [11.9, 11.8, 12.0], requests=180, concurrency=8, p50_ms=342),
    ]


def test_queued_lead_under_overload_is_named_as_such_with_its_backlog_growth() -> None:
    line = inline_or_queued(overloaded_pair() + kept_up_pair())
    assert line.supported
    assert line.text.startswith(
        "Inline or queued, at equal server capacity (workers / S = concurrency / S ≈ 25.0 req/s, S = 320 ms "
        "per request upstream; 3 paired trials per cell, 95 % intervals): the queued system did better at "
        "36 req/s (open loop: timed out 4.7 % [3.7, 5.9] vs 90.4 % [88.9, 91.8], completed 24.4 req/s "
    )
    assert (
        "they did alike (timeouts within ±1 point, throughput within ±10 %) at 12 req/s (open loop)"
        in line.text
    )
    assert "At 36 req/s neither kept up: 36.0 req/s arrived for ≈ 25.0 req/s of capacity" in line.text
    assert "growing by ≈ 11.0 req/s" in line.text and "past this cell's 15 s" in line.text
    # p50 per trial is the row's (313 vs 342 in every trial): a paired difference of -29 ms, no spread
    assert "queued p50 minus inline p50 was -29 ms [-29 ms, -29 ms] at 12 req/s" in line.text


def test_inline_lead_is_reported_and_no_overload_caveat_without_overload() -> None:
    cells = [
        open_cell("queued", 20, [30, 32, 28], [18.0, 17.8, 18.2], requests=300, workers=8),
        open_cell("sync", 20, [0, 0, 0], [20.0, 19.9, 20.1], requests=300, concurrency=8),
    ]
    line = inline_or_queued(cells)
    assert "the inline baseline did better at 20 req/s (open loop: timed out 10.0 % [" in line.text
    assert "queued system did better" not in line.text and "backlog" not in line.text


def test_noisy_trials_give_cannot_tell_with_the_trials_that_would_decide() -> None:
    cells = [
        open_cell("queued", 20, [0, 30, 5], [19.0, 16.0, 19.5], workers=8),
        open_cell("sync", 20, [10, 5, 40], [18.0, 19.0, 15.0], concurrency=8),
    ]
    line = inline_or_queued(cells)
    assert "cannot tell from this run at 20 req/s (open loop:" in line.text
    assert "more trials per cell would decide, ≈ " in line.text and "min more per cell" in line.text
    assert "did better" not in line.text and "did alike" not in line.text


def test_a_tighter_slo_enters_the_answer_where_it_ranks_the_sides_differently() -> None:
    """No timeouts on either side, but only the inline side answers within 1 s."""
    shared = {"load": "open", "rate": 12, "service_time_ms": 320, "slo_e2e_ms": 1000, "deadline_s": 8}

    def per_trial(met: tuple[int, ...]) -> list[dict[str, object]]:
        row = {"timeouts": 0, "throughput_rps": 12.0, "offered_rps": 12, "requests": 180}
        return [{**row, "slo_ok": k, "goodput_rps": k / 15} for k in met]

    queued = trials(
        per_trial((60, 70, 65)), cell_id="q", architecture="queued", mode="longpoll", workers=8, **shared
    )
    sync = trials(
        per_trial((178, 179, 177)),
        cell_id="s",
        architecture="sync",
        mode="threadpool",
        concurrency=8,
        **shared,
    )
    line = inline_or_queued([queued, sync])
    assert "the inline baseline did better at 12 req/s" in line.text
    assert (
        "within the SLO (e2e ≤ 1.00 s) 36.1 % [" in line.text
        and "the inline baseline clearly ahead there" in line.text
    )


def test_without_an_equal_capacity_pair_the_architecture_question_stays_open() -> None:
    cells = [
        open_cell("queued", 36, [0, 0, 0], [36.0, 36.0, 36.0], workers=16),  # 50 req/s
        open_cell("sync", 36, [400, 400, 400], [10.0, 10.0, 10.0], concurrency=8),  # 25 req/s
    ]
    line = inline_or_queued(cells)
    assert not line.supported
    assert "no load was run on both architectures at equal server capacity" in line.text


def asyncio_cell(users: int, throughput: float, timeouts: int = 0, **extra: object) -> CellSummary:
    return sync_cell(
        users,
        timeouts,
        p99=650,
        mode="asyncio",
        concurrency=None,
        throughput_rps=throughput,
        processes=1,
        **extra,
    )


def test_an_unbounded_inline_mode_with_timeouts_clearly_below_one_percent_needs_no_workers() -> None:
    threads = sync_cell(48, 0, throughput_rps=22.0)
    (line,) = unbounded_inline([asyncio_cell(16, 48.0), asyncio_cell(64, 189.7), threads])
    assert line.supported
    assert line.text.startswith(
        "sync/asyncio (p1), bounded only by the upstream, had timeouts clearly below 1 %"
    )
    assert "up to 189.7 req/s [" in line.text and "completed at 64 users" in line.text
    assert unbounded_inline([asyncio_cell(16, 48.0), asyncio_cell(64, 120.0, timeouts=10)]) == []
    assert unbounded_inline([threads]) == []  # bounded: the equal-capacity comparison covers it


def test_an_unbounded_inline_mode_the_machine_limited_makes_no_claim() -> None:
    busy = asyncio_cell(64, 52.6, testbed_limited="baseline process at 91 % of a core")
    (line,) = unbounded_inline([asyncio_cell(16, 48.0), busy])
    assert not line.supported
    assert "the machine limited it at 64 users (baseline process at 91 % of a core)" in line.text
    assert "cannot say that inline async needs no workers" in line.text


def test_an_unbounded_inline_mode_with_too_few_requests_cannot_tell() -> None:
    few = trials([{"timeouts": 0, "throughput_rps": 48.0, "requests": 40}], cell_id="a", architecture="sync",
                 mode="asyncio", users=16, processes=1)  # fmt: skip
    (line,) = unbounded_inline([few])
    assert not line.supported and "cannot tell from this run whether its timeouts stay below 1 %" in line.text


def test_workers_for_example_rates_from_the_slope_and_its_interval() -> None:
    line = workers_needed([queued_cell(w, 3.0 * w) for w in (1, 2, 4, 8)], SERVICE)
    assert line.supported
    assert (
        "each worker served 3.0 req/s [3.0, 3.0] (96 % [96, 96] of 1/S, S = 320 ms per request)" in line.text
    )
    assert "the slope over 12 trials from 1 to 8 workers" in line.text
    assert "10 req/s → 5 [5, 5]; 50 req/s → 21 [21, 21] (extrapolated); 100 req/s → 42 [42, 42]" in line.text
    assert "stopped growing" not in line.text


def test_worker_count_ranges_follow_the_slope_interval() -> None:
    assert workers_for(10, Interval(2.5, 2.0, 3.0, 9, "least squares")) == "5 [5, 7]"
    assert workers_for(10, Interval(2.5, -0.5, 5.0, 9, "least squares")) == "5 [3, unbounded]"
    assert workers_for(10, Interval(2.5, None, None, 2, "least squares")) == "5"


def test_sizing_stops_where_throughput_stopped_growing_and_leaves_out_testbed_limited_counts() -> None:
    cells = [queued_cell(1, 3.0), queued_cell(2, 6.0), queued_cell(4, 12.0), queued_cell(8, 12.4)]
    line = workers_needed(cells, SERVICE)
    assert "from 1 to 4 workers" in line.text
    assert (
        "Past 4 workers throughput stopped growing on this machine (8 workers served 12.4 req/s ["
        in line.text
    )
    client_bound = cells[:3] + [queued_cell(8, 12.4, users=4)]
    assert "8 workers were offered less than their capacity" in workers_needed(client_bound, SERVICE).text
    limited = cells[:3] + [queued_cell(8, 20.0, testbed_limited="machine at 190 % of 200 %")]
    text = workers_needed(limited, SERVICE).text
    assert "from 1 to 4 workers" in text
    assert "Left out because the machine limited them: 8 workers (machine at 190 % of 200 %)" in text


def test_sizing_needs_two_worker_counts() -> None:
    line = workers_needed([queued_cell(4, 12.0), queued_cell(4, 11.0, users=6)], SERVICE)
    assert not line.supported and "fewer than two queued worker counts" in line.text


def test_sizing_without_a_known_upstream_has_no_ideal_but_still_sizes() -> None:
    cells = [queued_cell(w, 3.0 * w, ideal_rps="") for w in (1, 2, 4)]
    line = workers_needed(cells, None)
    assert line.supported and "no ideal to compare with: the upstream's latency is unknown" in line.text
    assert "10 req/s → 5 [5, 5]" in line.text
