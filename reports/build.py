"""`ragload report RUN_DIR [--out DIR]`: plots, report.html and report.md from a run folder alone."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from reports.answer import compute_answer
from reports.corner_plots import write_corner_plots
from reports.corners import corners_verdicts, table_rows
from reports.faults.data import is_fault_run
from reports.faults.report import build_fault_report
from reports.plots import DEFAULT_DPI, PLOT_PATTERNS, write_plots
from reports.render import build_content, render_html, render_markdown
from reports.run_data import RunFolderError, load_run
from reports.upstream_plot import PLOT_NAME, upstream_section
from reports.verdict import compute_verdict


def build_report(run_dir: Path, out_dir: Path | None = None, dpi: int = DEFAULT_DPI) -> Path:
    """Write the PNGs, report.html and report.md into `out_dir` (default: the run folder).

    Returns the path of report.html. A fault run folder (docs/architecture.md) gets the fault report.
    """
    if is_fault_run(run_dir):
        return build_fault_report(run_dir, out_dir, dpi=dpi)
    run = load_run(run_dir)
    out = out_dir or run_dir
    out.mkdir(parents=True, exist_ok=True)
    for pattern in (*PLOT_PATTERNS, PLOT_NAME):  # a rebuild must not leave a previous layout's plots behind
        for stale in out.glob(pattern):
            stale.unlink()
    plots = write_plots(run, out, dpi=dpi) + write_corner_plots(run, out, dpi=dpi)
    content = build_content(
        run, compute_answer(run), compute_verdict(run), plots, upstream_section(run, out, dpi)
    )
    content = replace(content, corners=corners_verdicts(run), corners_table=table_rows(run.cells))
    (out / "report.md").write_text(render_markdown(content), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(render_html(content), encoding="utf-8")
    return html_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        type=Path,
        help="a run folder written by `ragload bench` (reports/runs/<ts>), fault runs too",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the report here instead of RUN_DIR")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI, help="PNG resolution (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    try:
        html_path = build_report(args.run_dir, args.out, dpi=args.dpi)
    except RunFolderError as exc:
        print(f"ragload report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {html_path}")
    print(f"        {html_path.with_name('report.md')}")
    return 0
