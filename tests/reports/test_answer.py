from __future__ import annotations

from reports.answer import inline_or_queued, unbounded_inline, workers_needed
from reports.run_data import CellSummary
from tests.reports.test_verdict import SERVICE, cell, open_cell, queued_cell, sync_cell


def overloaded_pair() -> list[CellSummary]:
    """36 req/s offered to 8 workers and to 8 threads (both 25 req/s at most): the queue kept up longer."""
    return [
        open_cell("queued", 36, requests=512, timeouts=24, ok_rps=24.4, workers=8, duration_s=15),
        open_cell("sync", 36, requests=541, timeouts=464, ok_rps=10.7, concurrency=8),
    ]


def kept_up_pair() -> list[CellSummary]:
    return [
        open_cell("queued", 12, requests=192, timeouts=0, ok_rps=12.1, workers=8, p50_ms=313),
        open_cell("sync", 12, requests=180, timeouts=0, ok_rps=11.9, concurrency=8, p50_ms=342),
    ]


def test_queued_lead_under_overload_is_named_as_such_with_its_backlog_growth() -> None:
    line = inline_or_queued(overloaded_pair() + kept_up_pair())
    assert line.supported
    assert line.text.startswith(
        "Inline or queued, at equal server capacity (workers / S = concurrency / S ≈ 25.0 req/s, S = 320 ms"
    )
    assert (
        "the queued system did better at 36 req/s (open loop: timed out 4.7 % vs 85.8 %, "
        "completed 24.4 vs 10.7 req/s, queued vs inline)"
    ) in line.text
    assert "they did alike" in line.text and "at 12 req/s (open loop)" in line.text
    assert "At 36 req/s neither kept up: 36.0 req/s arrived for ≈ 25.0 req/s of capacity" in line.text
    assert "growing by ≈ 11.0 req/s" in line.text and "past this cell's 15 s" in line.text
    assert "queued p50 minus inline p50 was -29 ms" in line.text


def test_inline_lead_is_reported_and_no_overload_caveat_without_overload() -> None:
    cells = [
        open_cell("queued", 20, requests=300, timeouts=30, ok_rps=18.0, workers=8),
        open_cell("sync", 20, requests=300, timeouts=0, ok_rps=20.0, concurrency=8),
    ]
    line = inline_or_queued(cells)
    assert "the inline baseline did better at 20 req/s (open loop: timed out 10.0 % vs 0.0 %" in line.text
    assert "queued system did better" not in line.text and "backlog" not in line.text


def test_without_an_equal_capacity_pair_the_architecture_question_stays_open() -> None:
    cells = [
        open_cell("queued", 36, requests=500, timeouts=0, ok_rps=36.0, workers=16),  # 50 req/s
        open_cell("sync", 36, requests=500, timeouts=400, ok_rps=10.0, concurrency=8),  # 25 req/s
    ]
    line = inline_or_queued(cells)
    assert not line.supported
    assert "no load was run on both architectures at equal server capacity" in line.text


def asyncio_cell(users: int, throughput: float, timeouts: int = 0) -> CellSummary:
    return sync_cell(
        users, timeouts, p99=650, mode="asyncio", concurrency=None, throughput_rps=throughput, processes=1
    )


def test_an_unbounded_inline_mode_without_timeouts_needs_no_workers() -> None:
    threads = cell(architecture="sync", mode="threadpool", users=48, throughput_rps=22.0, concurrency=8)
    (line,) = unbounded_inline([asyncio_cell(16, 48.0), asyncio_cell(64, 189.7), threads])
    assert line.text.startswith("sync/asyncio (p1), bounded only by the upstream, had no timeouts")
    assert "up to 189.7 req/s completed at 64 users" in line.text
    assert unbounded_inline([asyncio_cell(16, 48.0), asyncio_cell(64, 120.0, timeouts=10)]) == []
    assert unbounded_inline([threads]) == []  # bounded: the equal-capacity comparison covers it


def test_workers_for_example_rates_from_the_measured_per_worker_throughput() -> None:
    line = workers_needed([queued_cell(w, 3.0 * w) for w in (1, 2, 4, 8)], SERVICE)
    assert line.supported
    assert "each worker served 3.00 req/s (96 % of 1/S, S = 320 ms per request)" in line.text
    assert "measured from 1 to 8 workers" in line.text
    # at most 80 % busy: ceil(rate / 2.4)
    assert "10 req/s → 5; 50 req/s → 21 (extrapolated); 100 req/s → 42 (extrapolated) workers" in line.text
    assert "stopped growing" not in line.text


def test_sizing_stops_where_throughput_stopped_growing() -> None:
    cells = [queued_cell(1, 3.0), queued_cell(2, 6.0), queued_cell(4, 12.0), queued_cell(8, 12.4)]
    line = workers_needed(cells, SERVICE)
    assert "measured from 1 to 4 workers" in line.text
    assert "Past 4 workers throughput stopped growing on this machine (8 workers served 12.4" in line.text
    client_bound = cells[:3] + [queued_cell(8, 12.4, users=4)]
    assert "8 workers were offered less than their capacity" in workers_needed(client_bound, SERVICE).text


def test_sizing_needs_two_worker_counts() -> None:
    line = workers_needed([queued_cell(4, 12.0), queued_cell(4, 11.0, users=6)], SERVICE)
    assert not line.supported and "fewer than two queued worker counts" in line.text
