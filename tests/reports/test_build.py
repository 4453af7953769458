from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from PIL import Image

from loadtests.cli import main as cli_main
from reports.answer import compute_answer
from reports.build import build_report
from reports.run_data import load_run
from reports.verdict import compute_verdict
from tests.reports.synthetic_run import CellPlan, RunPlan, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "reports" / "sample"


def small_plan() -> RunPlan:
    """Both architectures, both load modes, three worker counts, an empty and an all-timeout cell."""
    cells = [CellPlan("queued", "longpoll", "closed", workers=w, users=2 * w) for w in (1, 2, 4)]
    cells += [CellPlan("sync", "blocking", "closed", users=u, processes=1, concurrency=1) for u in (2, 4, 16)]
    cells += [
        CellPlan("queued", "longpoll", "open", workers=2, rate=4.0),
        CellPlan("sync", "threadpool", "open", rate=4.0, processes=1, threads=4, concurrency=4),
        CellPlan("sync", "threadpool", "open", rate=8.0, processes=1, threads=4, concurrency=4, empty=True),
        CellPlan("queued", "poll", "closed", workers=2, users=4, generator_cpu_pct=92.0),
    ]
    return RunPlan(cells=cells, deadline_s=3.0, warmup_s=1.0, duration_s=4.0, repeats=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("run") / "20261120-100000", small_plan())


@pytest.fixture(scope="module")
def built(run_dir: Path) -> Path:
    return build_report(run_dir)


def external_references(text: str) -> list[str]:
    """Every src/href/url() target that is not an inline data URI or an in-page anchor."""
    targets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text, flags=re.IGNORECASE)
    targets += re.findall(r"url\(\s*['\"]?([^'\")]*)", text, flags=re.IGNORECASE)
    return [t for t in targets if not t.startswith(("data:", "#"))]


def test_report_writes_valid_pngs_html_and_markdown(run_dir: Path, built: Path) -> None:
    assert built == run_dir / "report.html"
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    for expected in (
        "latency_closed.png",
        "latency_open.png",
        "timeouts_closed.png",
        "responsiveness_closed.png",
        "throughput_workers.png",
        "queue_depth.png",
    ):
        assert expected in pngs
    for name in pngs:
        path = run_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.width >= 400 and image.height >= 200
    assert (run_dir / "report.md").is_file()


def test_html_is_self_contained_and_holds_the_verdict(run_dir: Path, built: Path) -> None:
    text = built.read_text(encoding="utf-8")
    assert external_references(text) == []
    assert "<script" not in text.lower() and "<link" not in text.lower()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', text)
    assert len(images) == len(list(run_dir.glob("*.png")))
    run = load_run(run_dir)
    for verdict in compute_answer(run) + compute_verdict(run):
        assert html.escape(verdict.text) in text
    assert text.index("<h2>Answer</h2>") < text.index("<h2>Run</h2>")  # the answer comes first
    assert "starts timing out" in text  # the blocking baseline at 16 users on one process, 3 s deadline
    assert "generator-limited" in text and "SATURATED" in text
    assert "Synthetic sample" in text  # meta.json says synthetic


def test_markdown_references_images_by_relative_name(run_dir: Path, built: Path) -> None:
    text = (run_dir / "report.md").read_text(encoding="utf-8")
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert names and all("/" not in name and (run_dir / name).is_file() for name in names)
    for heading in ("## Answer", "## Run", "## Verdict", "## Summary", "## Plots", "## Methodology"):
        assert heading in text
    assert "closed loop" in text and "open loop" in text
    assert "0000000 (synthetic)" in text  # git revision from meta.json


def test_tolerates_missing_optional_columns_and_files(tmp_path: Path) -> None:
    optional = [
        "mean_ms",
        "submit_p99_ms",
        "probe_p99_ms",
        "generator_cpu_pct",
        "generator_saturated",
        "service_time_ms",
        "deadline_s",
        "ideal_bound",
        "throughput_ratio",
        "concurrency",
    ]
    run_dir = write_run(tmp_path / "run", small_plan(), drop_columns=optional)
    (run_dir / "config.json").unlink()
    (run_dir / "meta.json").unlink()
    for server in (run_dir / "cells").glob("*/server.csv"):
        server.unlink()
    out = build_report(run_dir, tmp_path / "out")
    text = out.read_text(encoding="utf-8")
    assert "Generator CPU was not recorded" in text
    assert "unknown" in text  # git revision and machine
    assert not (tmp_path / "out" / "queue_depth.png").exists()  # no server.csv, no queue-depth plot
    assert (tmp_path / "out" / "latency_closed.png").is_file()


def test_cli_report_and_clear_error_for_a_folder_that_is_no_run(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sample"
    assert cli_main(["report", str(run_dir), "--out", str(out), "--dpi", "50"]) == 0
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert cli_main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "no summary.csv" in capsys.readouterr().err


def test_rebuild_removes_stale_plots(run_dir: Path, built: Path) -> None:
    stale = run_dir / "latency_stale.png"
    stale.write_bytes(PNG_MAGIC)
    keep = run_dir / "notes.png"
    keep.write_bytes(PNG_MAGIC)
    build_report(run_dir)
    assert not stale.exists() and keep.exists()
    keep.unlink()


@pytest.mark.skipif(not (SAMPLE_DIR / "report.html").is_file(), reason="no committed sample report")
def test_committed_sample_is_self_contained_and_small() -> None:
    text = (SAMPLE_DIR / "report.html").read_text(encoding="utf-8")
    assert external_references(text) == []
    total = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir())
    assert total < 3_000_000
