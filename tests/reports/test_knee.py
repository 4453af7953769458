"""The report on an upstream with a knee: the Answer's knee lines and the upstream section, from a small
synthetic run folder (tests/reports/knee_run.py)."""

from __future__ import annotations

from pathlib import Path

from reports.answer import compute_answer
from reports.build import build_report
from reports.run_data import load_run
from reports.upstream import Call, binned, with_in_flight
from tests.reports.knee_run import standard_cells, write_knee_run


def _answer(tmp_path: Path, **kwargs: object) -> list[str]:
    run = load_run(write_knee_run(tmp_path / "run", standard_cells(**kwargs)))  # type: ignore[arg-type]
    return [line.text for line in compute_answer(run)]


def test_calls_in_flight_count_the_calls_started_and_not_yet_ended() -> None:
    calls = [Call(0, 100, None, True), Call(50, 100, None, True), Call(120, 100, None, True)]
    assert [c.in_flight for c in with_in_flight(calls)] == [1, 2, 2]  # the first has ended at 100
    bins = binned(with_in_flight(calls))
    assert [(b.low, b.calls) for b in bins] == [(1, 1), (2, 2)]


def test_the_answer_says_where_inline_asyncio_starts_to_time_out_and_why(tmp_path: Path) -> None:
    lines = _answer(tmp_path)
    onset = next(line for line in lines if line.startswith("Inline asyncio on `vllm-like`"))
    assert "knee ≈ 12 calls in flight, ≈ 22.0 req/s" in onset
    assert "starts to time out between 18 req/s and 30 req/s" in onset
    assert "from 30 req/s it timed out 67.4 % [" in onset  # 364 of 540 requests, Wilson interval
    assert "a median 40 [" in onset and "12.3× the 300 ms of a call alone" in onset  # 3.7 s vs the curve's
    assert "every call in flight slows together" in onset
    assert "Contrast: at the same 30 req/s on `unbounded` (no capacity limit) it timed out 0.0 % [" in onset


def test_a_pool_at_the_knee_that_serves_more_is_said_to_do_better(tmp_path: Path) -> None:
    lines = _answer(tmp_path)
    pool = next(line for line in lines if line.startswith("A worker pool at 30 req/s"))
    assert "past the knee's rate" in pool and "3 paired trials" in pool
    assert "queued with 12 workers had a median 12 [" in pool and "(at most 12)" in pool
    assert "inline asyncio had a median 40 [" in pool
    assert "Queued minus inline: timeouts " in pool and ": the queued system did better." in pool
    assert "never more calls than its 12 workers" in pool


def test_when_the_queue_does_not_help_the_answer_says_so(tmp_path: Path) -> None:
    lines = _answer(tmp_path, queue_timeouts=(150, 160, 155))  # the pool timed out more than asyncio
    pool = next(line for line in lines if line.startswith("A worker pool at 30 req/s"))
    assert "the queue did not help here: the inline baseline did better" in pool
    assert "the queued system did better" not in pool


def test_a_burst_is_compared_in_both_designs(tmp_path: Path) -> None:
    lines = _answer(tmp_path)
    burst = next(line for line in lines if line.startswith("A burst of 60 req/s for 3 s"))
    assert "≈ 180 requests, 2.7× the knee's rate" in burst
    assert "queued with 12 workers had a median 12 [" in burst and "inline asyncio had a median 60 [" in burst
    assert "answered 59.8 % [" in burst  # 323 of 540 within the deadline
    assert "the queued system did better" in burst


def test_the_unbounded_contrast_keeps_its_own_line_and_the_knee_cells_stay_out_of_it(tmp_path: Path) -> None:
    lines = _answer(tmp_path)
    unbounded = [line for line in lines if "bounded only by the upstream" in line]
    assert len(unbounded) == 1 and "(`unbounded`)" in unbounded[0]


def test_the_report_has_an_upstream_section_with_its_plot(tmp_path: Path) -> None:
    run_dir = write_knee_run(tmp_path / "run", standard_cells())
    build_report(run_dir)
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    section = markdown.split("## Upstream", 1)[1].split("## Verdict", 1)[0]
    assert "vllm-like: a batching engine whose throughput peaks at ≈ 22.0 RAG requests/s" in section
    assert "unbounded: no capacity limit" in section
    assert "chat calls on `vllm-like`" in section and "![The upstream" in section
    assert (run_dir / "upstream.png").stat().st_size > 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Upstream</h2>" in html
