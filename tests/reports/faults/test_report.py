from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from loadtests.cli import main as cli_main
from reports.build import build_report
from reports.faults.data import TimelineRow, is_fault_run, load_fault_run
from reports.faults.plots import unsampled_windows
from reports.faults.verdict import autoscale_finding, scenario_verdict
from tests.reports.faults.synthetic_faults import default_plans, write_fault_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    run_dir = tmp_path_factory.mktemp("faults") / "20261120-100000"
    return run_dir, write_fault_run(run_dir, default_plans())


@pytest.fixture(scope="module")
def built(fault_run: tuple[Path, dict[str, dict[str, Any]]]) -> tuple[Path, str]:
    run_dir, _ = fault_run
    html_path = build_report(run_dir)
    return html_path, (run_dir / "report.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def lossy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A broker restart that forgets queued jobs (persistence off): those are lost."""
    broker = next(plan for plan in default_plans() if plan.broker_restart)
    plan = dataclasses.replace(broker, forget_on_restart=4, workers=1)  # one worker: a queue builds up
    run_dir = tmp_path_factory.mktemp("lossy") / "20261120-110000"
    return run_dir, write_fault_run(run_dir, [plan])[plan.name]


def test_fault_folder_is_dispatched_to_the_fault_report(fault_run: tuple[Path, Any], built: Any) -> None:
    run_dir, outcomes = fault_run
    assert is_fault_run(run_dir)
    html_path, markdown = built
    assert html_path == run_dir / "report.html"
    for name in outcomes:
        png = run_dir / f"faults_{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        with Image.open(png) as image:
            assert image.width > 400 and image.height > 400
        assert f"]({png.name})" in markdown
    assert not (run_dir / "summary.csv").exists()


def test_html_is_self_contained_with_one_inline_image_per_scenario(fault_run: Any, built: Any) -> None:
    _, outcomes = fault_run
    page = built[0].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(outcomes)
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", page)


def test_verdict_numbers_match_the_synthetic_outcomes(fault_run: Any, built: Any) -> None:
    _, outcomes = fault_run
    markdown = built[1]
    for name, outcome in outcomes.items():
        line = next(line for line in markdown.splitlines() if line.startswith(f"- {name}: "))
        assert f"{outcome['accepted']:,} accepted → {outcome['finished']:,} finished" in line
        assert f"{outcome['dead_lettered']:,} dead-lettered" in line
        assert f"{outcome['lost']:,} lost; {outcome['retried']:,} retries" in line
        assert f"drained in {outcome['drain_s']:.1f} s" in line
        for reason, count in outcome["dead_letter_reasons"].items():
            assert f"{reason}: {count:,}" in line
    kills = outcomes["kills-and-errors"]
    assert kills["dead_lettered"] > 0 and kills["retried"] > 0  # the synthetic scenario exercises both


def test_breaker_broker_and_autoscale_sentences_come_from_the_files(fault_run: Any, built: Any) -> None:
    _, outcomes = fault_run
    markdown = built[1]
    breaker = outcomes["llm-outage"]["breaker"]
    assert (
        f"opened {breaker['opened_after_s']:.1f} s after the outage began, "
        f"closed {breaker['closed_after_s']:.1f} s after it ended" in markdown
    )
    broker = outcomes["broker-restart"]["broker"]
    assert broker["api_503"] > 0
    assert (
        f"Valkey down {broker['down_s']:.1f} s: the API answered {broker['api_503']:,} × 503 "
        f"(all with Retry-After), first 202 {broker['recovered_after_s']:.1f} s after it came back; 0 lost"
        in markdown
    )
    scaled = outcomes["autoscale-step"]
    assert scaled["max_workers"] > scaled["min_workers"]
    assert (
        f"from {scaled['min_workers']} to {scaled['max_workers']} and back to {scaled['min_workers']}"
        in markdown
    )
    assert "FAILURE" not in markdown


def test_kill_to_restart_times_are_reported_and_a_late_restart_fails(fault_run: Any, built: Any) -> None:
    run_dir, outcomes = fault_run
    restarts = outcomes["kills-and-errors"]["kill_to_restart"]
    assert restarts["restarted"] > 0 and restarts["pending"] == 0
    assert (
        f"the killed workers held {restarts['jobs']:,} jobs, retried after median "
        f"{restarts['retry_median_s']:.1f} s (max {restarts['retry_max_s']:.1f} s), "
        f"{restarts['restarted']:,} started again by "
        f"another worker after median {restarts['median_s']:.1f} s (min {restarts['min_s']:.1f} s, "
        f"max {restarts['max_s']:.1f} s) from the SIGKILL" in built[1]
    )
    path = run_dir / "faults" / "kills-and-errors" / "outcome.json"
    late = json.loads(path.read_text())
    late["kill_to_restart"] |= {"max_s": 31.0, "p90_s": 20.0, "pending": 1}
    folder = run_dir.parent / "late"
    write_fault_run(folder, [default_plans()[0]])
    (folder / "faults" / "kills-and-errors" / "outcome.json").write_text(json.dumps(late))
    verdict = scenario_verdict(load_fault_run(folder).scenarios[0])
    failure = next(f.text for f in verdict.findings if "never started again" in f.text)
    assert failure.startswith("FAILURE") and "the slowest after 31.0 s (promise: within 30 s)" in failure
    assert "p90 20.0 s, max 31.0 s) from the SIGKILL" in failure


def test_lost_jobs_are_a_loud_failure_with_their_ids(lossy_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, outcome = lossy_run
    assert outcome["lost"] == 4
    build_report(run_dir)
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "**FAILURE in broker-restart" in markdown
    assert f"**FAILURE: {outcome['lost']} accepted jobs LOST" in markdown
    for job_id in outcome["lost_job_ids"]:
        assert job_id in markdown
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f'<li class="failure">{html.escape("FAILURE: 4 accepted jobs LOST")}' in page


def test_outcome_contradicting_jobs_csv_is_reported(tmp_path: Path) -> None:
    plan = default_plans()[2]
    write_fault_run(tmp_path, [plan])
    path = tmp_path / "faults" / plan.name / "outcome.json"
    outcome = json.loads(path.read_text())
    outcome["finished"] += 1  # an audit that claims more than jobs.csv shows
    path.write_text(json.dumps(outcome))
    verdict = scenario_verdict(load_fault_run(tmp_path).scenarios[0])
    assert verdict.failed
    assert any("jobs.csv has" in finding.text for finding in verdict.findings)


def test_missing_files_do_not_break_the_report(tmp_path: Path) -> None:
    write_fault_run(tmp_path, [default_plans()[0]])
    folder = next((tmp_path / "faults").iterdir())
    (folder / "outcome.json").unlink()
    (folder / "events.csv").unlink()
    build_report(tmp_path)
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "has no audit" in markdown and "outcome.json is missing" in markdown


def test_broker_down_rows_are_gaps_not_zeros() -> None:
    def row(t: float, up: bool) -> TimelineRow:
        values = {"accepted": "10", "finished": "5", "dead_lettered": "1", "queued": "2", "running": "1"}
        return TimelineRow.model_validate(
            {"t": t, "broker_up": "1" if up else "0"} | (values if up else dict.fromkeys(values, ""))
        )

    rows = [row(0.0, True), row(0.5, False), row(1.0, False), row(1.5, True)]
    assert [r.unaccounted for r in rows] == [1.0, None, None, 1.0]
    assert [(w.start, w.end) for w in unsampled_windows(rows)] == [(0.0, 1.5)]


def test_cli_builds_the_fault_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_fault_run(tmp_path, [default_plans()[3]])
    assert cli_main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert "report:" in capsys.readouterr().out


def test_the_scenario_says_which_engine_its_workers_ran_on(tmp_path: Path) -> None:
    plan = default_plans()[0]
    write_fault_run(tmp_path, [plan])
    before = scenario_verdict(load_fault_run(tmp_path).scenarios[0])
    assert before.description == f"{plan.description} (RQ workers, one job at a time per process)"
    path = tmp_path / "faults" / plan.name / "scenario.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"engine": "saq", "concurrency": 16}))
    after = scenario_verdict(load_fault_run(tmp_path).scenarios[0])
    assert after.description == f"{plan.description} (SAQ workers, 16 jobs in flight per process)"
    assert after.findings == before.findings  # the same audit, judged the same way


@pytest.mark.parametrize(
    ("workers", "failed", "words"),
    [
        ([1, 1, 2, 6, 6, 4, 2, 1, 1, 2], False, "from 1 to 6 and back to 1 (autoscale 1–6), 2 at the end"),
        ([1, 6, 6, 4, 3, 3], True, "never came back below 3"),
        ([1, 1, 1], True, "never scaled up"),
    ],
)
def test_autoscale_is_judged_by_the_fewest_workers_after_the_peak(
    workers: list[int], failed: bool, words: str
) -> None:
    spec = SimpleNamespace(autoscale=(1, 6))
    scenario = SimpleNamespace(timeline=[SimpleNamespace(workers=n) for n in workers])
    finding = autoscale_finding(spec, scenario, SimpleNamespace(max_workers=max(workers)))  # type: ignore[arg-type]
    assert finding is not None and finding.failed == failed and words in finding.text, finding
