"""report.html (self-contained) and report.md of a fault run; the page furniture is render.py's."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from reports.faults.data import FaultRun
from reports.faults.verdict import Finding, ScenarioVerdict
from reports.plots import PlotFile
from reports.render import CSS, _data_uri, _md_cell, git_text, machine_text

FAULT_CSS = """
.failure { color: #b71c1c; font-weight: 700; background: #fde8e8; }
section.scenario { border-top: 1px solid #ddd; margin-top: 1.5em; }
"""
SYNTHETIC_NOTICE = (
    "Synthetic sample: this report was built from a simulated fault run, not from a measurement. "
    "Run `ragload bench --profile faults` for real numbers."
)
HOW_TO_READ = (
    "Top panel: cumulative jobs accepted (POST /chat → 202) and finished. Middle panel: cumulative retries "
    "scheduled and jobs dead-lettered, and the jobs unaccounted for at each instant (accepted − finished − "
    "dead-lettered − queued − running): it rises while a retried job waits for its backoff, and must come "
    "back to 0 by the end; the final `lost` figure is the audit after the drain (outcome.json). Bottom "
    "panels: live worker processes, queue depth and, with an LLM outage, the circuit breaker's state. "
    "Shaded: LLM error bursts, outages and broker downtime as the runner carried them out; hatched: no "
    "samples (the broker was down); ticks at the top: worker SIGKILLs."
)


@dataclass(frozen=True)
class ScenarioSection:
    verdict: ScenarioVerdict
    plot: PlotFile | None


@dataclass(frozen=True)
class FaultReportContent:
    title: str
    synthetic: bool
    metadata: list[tuple[str, str]]
    summary: Finding
    sections: list[ScenarioSection]


def _wall_time(meta: dict[str, Any]) -> str:
    wall = meta.get("wall_s")
    return f"{float(wall):.0f} s ({float(wall) / 60:.1f} min)" if isinstance(wall, int | float) else "unknown"


def fault_metadata(run: FaultRun) -> list[tuple[str, str]]:
    meta = run.meta
    started, ended = meta.get("started"), meta.get("ended")
    items = [
        ("run folder", run.run_dir.name),
        ("kind", str(meta.get("kind") or "faults")),
        ("date", f"{started or 'unknown'}" + (f" → {ended}" if ended else "")),
        ("wall time", _wall_time(meta)),
        ("git revision", git_text(meta)),
        ("machine", machine_text(meta)),
        ("scenarios", ", ".join(s.name for s in run.scenarios) or "none"),
    ]
    if isinstance(meta.get("command"), str | list):
        command = meta["command"]
        items.append(("command", command if isinstance(command, str) else " ".join(map(str, command))))
    packages = meta.get("packages")
    if isinstance(packages, dict):
        items.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items()) if v)))
    return items


def _alt(plot: PlotFile) -> str:
    return plot.title.splitlines()[0]


def _html_finding(finding: Finding) -> str:
    css = ' class="failure"' if finding.failed else ""
    return f"<li{css}>{html.escape(finding.text)}</li>"


def _html_section(section: ScenarioSection) -> str:
    esc, verdict = html.escape, section.verdict
    findings = "".join(_html_finding(f) for f in verdict.findings)
    plot = section.plot
    figure = (
        f'<figure><img alt="{esc(_alt(plot))}" src="{_data_uri(plot)}"></figure>' if plot is not None else ""
    )
    return (
        f'<section class="scenario"><h3>{esc(verdict.name)}</h3><p>{esc(verdict.description)}</p>'
        f"<ul>{findings}</ul>{figure}</section>"
    )


def render_fault_html(content: FaultReportContent) -> str:
    esc = html.escape
    notice = f'<p class="notice">{esc(SYNTHETIC_NOTICE)}</p>' if content.synthetic else ""
    metadata = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in content.metadata)
    sections = "\n".join(_html_section(s) for s in content.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(content.title)}</title>
<style>{CSS}{FAULT_CSS}</style></head>
<body>
<h1>{esc(content.title)}</h1>
{notice}
<h2>Run</h2><dl>{metadata}</dl>
<h2>Verdict</h2><ul>{_html_finding(content.summary)}</ul>
<h2>Scenarios</h2><p>{esc(HOW_TO_READ)}</p>
{sections}
</body></html>
"""


def _md_finding(finding: Finding) -> str:
    return f"- **{finding.text}**" if finding.failed else f"- {finding.text}"


def render_fault_markdown(content: FaultReportContent) -> str:
    lines = [f"# {content.title}", ""]
    if content.synthetic:
        lines += [f"> **{SYNTHETIC_NOTICE}**", ""]
    lines += ["## Run", ""] + [f"- **{k}**: {_md_cell(v)}" for k, v in content.metadata] + [""]
    lines += ["## Verdict", "", _md_finding(content.summary), ""]
    lines += ["## Scenarios", "", HOW_TO_READ, ""]
    for section in content.sections:
        verdict = section.verdict
        lines += [f"### {verdict.name}", ""] + ([verdict.description, ""] if verdict.description else [])
        lines += [_md_finding(f) for f in verdict.findings] + [""]
        if section.plot is not None:
            lines += [f"![{_alt(section.plot)}]({section.plot.path.name})", ""]
    return "\n".join(lines)
