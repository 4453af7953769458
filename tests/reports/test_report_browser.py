"""The reports as a person sees them: each built report.html opened in headless Chromium
(tests/browser.py), every plot decoded and shown, nothing logged as an error. A screenshot of each is kept
in the test's folder (its path is printed: `pytest -s`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reports.build import build_report
from tests.browser import chromium_page, requires_chromium, screenshot
from tests.reports.faults.synthetic_faults import default_plans, write_fault_run
from tests.reports.synthetic_run import CellPlan, RunPlan, write_run

pytestmark = requires_chromium


def load_run(run_dir: Path) -> None:
    cells = [CellPlan("queued", "longpoll", "closed", workers=w, users=2 * w) for w in (1, 2, 4)]
    cells += [
        CellPlan("sync", "threadpool", "closed", users=u, processes=1, threads=2, concurrency=2)
        for u in (2, 8)
    ]
    cells += [
        CellPlan("queued", "longpoll", "open", workers=2, rate=4.0),
        CellPlan("sync", "threadpool", "open", rate=4.0, processes=1, threads=4, concurrency=4),
    ]
    write_run(run_dir, RunPlan(cells=cells, deadline_s=3.0, warmup_s=1.0, duration_s=4.0))


def fault_run(run_dir: Path) -> None:
    write_fault_run(run_dir, default_plans(scale=0.5))


@pytest.mark.parametrize("write", [load_run, fault_run], ids=["load report", "fault report"])
def test_report_html_shows_every_plot_without_an_error(write: Callable[[Path], None], tmp_path: Path) -> None:
    run_dir = tmp_path / "20261120-100000"
    write(run_dir)
    html_path = build_report(run_dir)
    plots = sorted(run_dir.glob("*.png"))
    assert plots, "the report drew no plot"

    with chromium_page() as (page, log):
        page.goto(html_path.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img",
            "imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,"
            " height: i.naturalHeight, shown: i.getBoundingClientRect().width}))",
        )
        shot = screenshot(page, tmp_path / f"{write.__name__}.png")

    assert len(images) == len(plots), (images, [p.name for p in plots])  # each plot once, all inline
    for image in images:
        assert image["complete"] and image["width"] >= 400 and image["height"] >= 200, image  # decoded
        assert image["shown"] > 100, image  # laid out on the page, not collapsed
    assert log.errors == []
    assert shot.stat().st_size > 10_000
