"""The four corners (reports/corners.py, reports/corner_plots.py) on synthetic run folders."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from reports.answer import compute_answer
from reports.build import build_report
from reports.concurrency import concurrency, corner, engine, jobs_per_worker
from reports.corners import by_upstream, corner_cells, corners_answer, levels, memory, table_rows
from reports.run_data import CellSummary, load_run
from tests.reports.synthetic_run import CellPlan, RunPlan, write_run

LOADS = (16, 64)
RQ_RSS, SAQ_RSS, THREADPOOL_RSS, ASYNCIO_RSS = 140.0, 150.0, 120.0, 110.0


def corner_plans(saq: bool = True, inline: bool = True, rq: bool = True) -> list[CellPlan]:
    plans = []
    for users in LOADS:
        if inline:
            plans.append(
                CellPlan(
                    "sync",
                    "threadpool",
                    "closed",
                    users=users,
                    processes=1,
                    threads=8,
                    concurrency=8,
                    rss_mb=THREADPOOL_RSS,
                )  # fmt: skip
            )
            plans.append(CellPlan("sync", "asyncio", "closed", users=users, processes=1, rss_mb=ASYNCIO_RSS))
        if rq:
            plans.append(
                CellPlan("queued", "longpoll", "closed", workers=4, users=users, engine="rq", rss_mb=RQ_RSS)
            )
        if saq:
            plans.append(
                CellPlan(
                    "queued",
                    "longpoll",
                    "closed",
                    workers=1,
                    users=users,
                    engine="saq",
                    jobs_per_worker=64,
                    rss_mb=SAQ_RSS,
                )  # fmt: skip
            )
    return plans


def corner_run(plans: list[CellPlan]) -> RunPlan:
    # a small CPU cost per job: on the simulated 2 cores, 64 jobs in flight at 40 ms each would be CPU-bound
    return RunPlan(cells=plans, deadline_s=5.0, warmup_s=1.0, duration_s=8.0, repeats=3, cpu_ms_per_job=1.0)


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("four") / "run", corner_run(corner_plans()))


def test_each_cell_lands_in_its_corner_with_its_concurrency(four: Path) -> None:
    found = corner_cells(load_run(four).cells)
    assert list(found) == ["inline threadpool", "inline asyncio", "queued RQ", "queued SAQ"]
    by_corner = {name: cells[-1] for name, cells in found.items()}  # the 64-user cells
    saq, rq = by_corner["queued SAQ"], by_corner["queued RQ"]
    assert (engine(saq), jobs_per_worker(saq), concurrency(saq).total, concurrency(saq).processes) == (
        "saq",
        64,
        64.0,
        1,
    )
    assert (engine(rq), jobs_per_worker(rq), concurrency(rq).total) == ("rq", 1, 4.0)
    assert concurrency(by_corner["inline threadpool"]).total == 8
    asyncio = concurrency(by_corner["inline asyncio"])
    assert asyncio.total == 64 and asyncio.upstream_bound  # the users it was offered


def test_at_64_users_the_async_corners_lead_and_rq_did_worse(four: Path) -> None:
    run = load_run(four)
    (low, high) = levels(corner_cells(run.cells))
    assert (high.load, high.value) == ("closed", 64.0)
    assert high.leader in ("inline asyncio", "queued SAQ")  # 64 at once against 4 RQ workers and 8 threads
    assert high.pairs["queued RQ"].winner == "queued"  # compare()'s first side: the leader did better
    assert high.pairs["inline threadpool"].winner == "queued"
    assert set(low.best) == set(high.best) == set(corner_cells(run.cells))
    (line,) = corners_answer(run)
    assert line.supported and "at 64 users (closed loop)" in line.text
    assert "queued RQ" in line.text and "95 % intervals" in line.text
    assert line in compute_answer(run)  # the Answer carries it


def test_memory_per_process_and_per_in_flight_job(four: Path) -> None:
    found = {name: cells[-1] for name, cells in corner_cells(load_run(four).cells).items()}
    rq, saq = memory(found["queued RQ"]), memory(found["queued SAQ"])
    assert rq.per_process is not None and rq.per_process.estimate == pytest.approx(RQ_RSS)
    # the role's whole RSS (the pool's parent included) over the jobs in flight: 4 workers hold 4, one SAQ 64
    assert rq.per_job is not None and rq.per_job.estimate == pytest.approx((4 * RQ_RSS + 30) / 4)
    assert saq.per_job is not None and saq.per_job.estimate == pytest.approx((SAQ_RSS + 30) / 64)
    assert rq.api is not None and rq.api.estimate == pytest.approx(90.0)
    assert memory(found["inline threadpool"]).api is None
    rows = table_rows(load_run(four).cells)
    assert {row[0] for row in rows} == set(found) and len(rows) == 2 * len(found)


def test_the_report_has_the_section_and_its_plots(four: Path, tmp_path: Path) -> None:
    html_path = build_report(four, tmp_path)
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Four corners" in markdown and "RSS per in-flight job [MiB]" in markdown
    assert "Four corners" in html_path.read_text(encoding="utf-8")
    (plot,) = tmp_path.glob("corners_*.png")
    assert plot.name == "corners_closed.png" and f"]({plot.name})" in markdown
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 400


def test_a_run_without_saq_has_no_corners_section(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", corner_run(corner_plans(saq=False)))
    run = load_run(run_dir)
    assert corners_answer(run) == [] and table_rows(run.cells) == []
    build_report(run_dir)
    assert "Four corners" not in (run_dir / "report.md").read_text(encoding="utf-8")
    assert not list(run_dir.glob("corners_*.png"))


def test_corners_without_cells_are_not_mentioned(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "run", corner_run(corner_plans(inline=False))))
    (line,) = corners_answer(run)
    assert "queued SAQ" in line.text and "queued RQ" in line.text
    assert (
        "inline" not in line.text.split(":")[0]
        and "threadpool" not in line.text
        and "asyncio" not in line.text
    )


def test_an_old_folder_is_rq_with_one_job_per_worker_and_no_memory(tmp_path: Path) -> None:
    """A summary.csv from before SAQ and the sampler's memory: no engine, no jobs_per_worker, no RSS."""
    plans = [CellPlan("queued", "longpoll", "closed", workers=2, users=6)]
    plans.append(CellPlan("sync", "threadpool", "closed", users=6, processes=1, threads=8, concurrency=8))
    new = ("engine", "jobs_per_worker", "rss_api_mb", "rss_worker_mb", "rss_baseline_mb",
           "rss_workers_total_mb", "rss_baseline_total_mb", "worker_processes")  # fmt: skip
    run_dir = write_run(tmp_path / "run", RunPlan(cells=plans), drop_columns=new)
    with (run_dir / "summary.csv").open(newline="", encoding="utf-8") as handle:
        assert not set(new) & set(next(csv.reader(handle)))
    cells = load_run(run_dir).cells
    (queued,) = [c for c in cells if c.architecture == "queued"]
    assert (engine(queued), jobs_per_worker(queued), corner(queued)) == ("rq", 1, "queued RQ")
    assert memory(queued).per_process is None and memory(queued).per_job is None
    build_report(run_dir)
    assert "| n/a |" in (run_dir / "report.md").read_text(encoding="utf-8")  # the RSS column: not recorded


def test_one_trial_per_cell_makes_no_pick(tmp_path: Path) -> None:
    """Without a spread across trials no difference is decided: the line says so instead of picking."""
    plans = [p for p in corner_plans() if p.users == 64]
    run_plan = RunPlan(cells=plans, deadline_s=5.0, warmup_s=1.0, duration_s=8.0, cpu_ms_per_job=1.0)
    (line,) = corners_answer(load_run(write_run(tmp_path / "run", run_plan)))
    assert "no pick from this run between" in line.text and "pick inline" not in line.text


def test_corners_are_compared_on_one_upstream_at_a_time(four: Path) -> None:
    def on(cell: CellSummary, upstream: str) -> CellSummary:
        return replace(cell, extra={**cell.extra, "upstream": upstream})

    cells = load_run(four).cells
    knee = [on(c, "vllm-like") for c in cells]
    contrast = [on(c, "unbounded") for c in cells if corner(c) in ("inline asyncio", "queued SAQ")]
    groups = by_upstream([*knee, *contrast])
    assert set(groups) == {"vllm-like", "unbounded"}
    assert len(groups["vllm-like"]) == len(knee)  # no cell of the other upstream among them
    assert {corner(c) for c in groups["unbounded"]} == {"inline asyncio", "queued SAQ"}
    # the same load on both upstreams is two comparisons, never one
    for members in groups.values():
        for level in levels(corner_cells(members)):
            assert {c.upstream for c in level.best.values()} == {members[0].upstream}
