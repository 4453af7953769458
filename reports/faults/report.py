"""The report of a fault run (`ragload bench --profile faults`): plots, verdict, report.html and report.md."""

from __future__ import annotations

from pathlib import Path

from reports.faults.data import load_fault_run
from reports.faults.plots import PLOT_PATTERN, write_fault_plots
from reports.faults.render import (
    FaultReportContent,
    ScenarioSection,
    fault_metadata,
    render_fault_html,
    render_fault_markdown,
)
from reports.faults.verdict import run_summary, scenario_verdict
from reports.plots import DEFAULT_DPI


def build_fault_report(run_dir: Path, out_dir: Path | None = None, dpi: int = DEFAULT_DPI) -> Path:
    """Write faults_<scenario>.png, report.html and report.md into `out_dir` (default: the run folder)."""
    run = load_fault_run(run_dir)
    out = out_dir or run_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(PLOT_PATTERN):  # a scenario dropped from the profile must not leave its plot behind
        stale.unlink()
    plots = write_fault_plots(run.scenarios, out, dpi=dpi)
    verdicts = [scenario_verdict(scenario) for scenario in run.scenarios]
    content = FaultReportContent(
        title=f"ragload fault report — {run_dir.name}",
        synthetic=run.synthetic,
        metadata=fault_metadata(run),
        summary=run_summary(verdicts, run),
        sections=[ScenarioSection(v, p) for v, p in zip(verdicts, plots, strict=True)],
    )
    (out / "report.md").write_text(render_fault_markdown(content), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(render_fault_html(content), encoding="utf-8")
    return html_path
