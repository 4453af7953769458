"""report.html (self-contained: inline CSS, images as base64 data URIs) and report.md (images by name)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reports import corners
from reports.plots import PlotFile
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData
from reports.upstream_plot import UpstreamSection
from reports.verdict_text import Verdict, format_ms, percent_text, percentile_text, rate_text

SYNTHETIC_NOTICE = (
    "Synthetic sample: this report was built from a simulated run folder, not from a measurement. "
    "Run `make bench` (or `ragload bench --profile quick`) for real numbers."
)
TABLE_HEADERS = (
    "cell",
    "architecture/mode",
    "load",
    "config",
    "trials",
    "requests",
    "timeouts",
    "p50",
    "p95",
    "p99",
    "throughput",
    "ideal [req/s]",
    "of ideal",
    "within SLO",
    "goodput",
    "submit p99",
    "probe p99",
    "CPU: generator / busiest server / machine",
    "RSS per process",
)
SATURATED_TR = '<tr class="saturated">'
UNSUPPORTED_LI = '<li class="unsupported">'
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:nth-child(-n+4) { text-align: left; }
tr.saturated td { background: #fde8e8; }
.notice { background: #fff4d6; border: 1px solid #e0c060; padding: 0.6em 1em; }
.unsupported { color: #777; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; }
"""


@dataclass(frozen=True)
class ReportContent:
    title: str
    synthetic: bool
    metadata: list[tuple[str, str]]
    answer: list[Verdict]  # reports/answer.py: inline or queued, and how many workers
    verdicts: list[Verdict]
    table: list[list[str]]
    saturated_rows: list[bool]  # generator saturated or testbed-limited: highlighted
    plots: list[PlotFile]
    methodology: list[str]
    upstream: UpstreamSection = UpstreamSection([], None)
    corners: list[Verdict] = field(default_factory=list)  # reports/corners.py: a run with SAQ cells only
    corners_table: list[list[str]] = field(default_factory=list)


def _get(data: dict[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def git_text(meta: dict[str, Any]) -> str:
    git = meta.get("git")
    revision = _get(meta, "git", "revision") if isinstance(git, dict) else git
    revision = revision or meta.get("git_revision") or "unknown"
    dirty = _get(meta, "git", "dirty") if isinstance(git, dict) else meta.get("git_dirty")
    return f"{revision}{' (uncommitted changes)' if dirty else ''}"


def machine_text(meta: dict[str, Any]) -> str:
    machine = meta.get("machine")
    if not isinstance(machine, dict):
        return "unknown"
    parts = []
    if machine.get("cpu_count") is not None:
        parts.append(f"{machine['cpu_count']} CPUs")
    if machine.get("memory_gb") is not None:
        parts.append(f"{float(machine['memory_gb']):.1f} GB RAM")
    parts += [str(machine[key]) for key in ("platform", "python") if machine.get(key)]
    return ", ".join(parts) or "unknown"


def metadata_items(run: RunData, service: ServiceModel | None) -> list[tuple[str, str]]:
    meta = run.meta
    started, ended = meta.get("started"), meta.get("ended")
    items = [
        ("run folder", run.run_dir.name),
        ("profile", run.profile_name),
        ("date", f"{started or 'unknown'}" + (f" → {ended}" if ended else "")),
        ("git revision", git_text(meta)),
        ("machine", machine_text(meta)),
        ("cells", str(len(run.cells))),
        ("client deadline", f"{run.deadline_s:g} s" if run.deadline_s else "unknown"),
    ]
    if service is not None:
        items.append(
            (
                "service time model",
                f"{service.source}: mean {service.mean_s * 1000:.0f} ms, CV² {service.cv2:.3f}",
            )
        )
    elif not run.upstream_known:
        items.append(("service time model", "unknown (--target without a mock URL): no ideal throughput"))
    overhead = run.config.get("overhead_ms")
    if isinstance(overhead, dict) and overhead:
        shown = ", ".join(f"{name} {value:g} ms" for name, value in sorted(overhead.items()))
        items.append(("job path's own time at zero upstream latency (not in the ideal)", shown))
    slo = run.slo
    if slo.get("e2e_ms") or slo.get("submit_ms"):
        parts = [f"{key.removesuffix('_ms')} ≤ {format_ms(value)}" for key, value in slo.items() if value]
        items.append(("SLO", ", ".join(parts)))
    packages = meta.get("packages") or meta.get("package_versions")
    if isinstance(packages, dict):
        installed = sorted((name, version) for name, version in packages.items() if version)
        if installed:
            items.append(("packages", ", ".join(f"{name} {version}" for name, version in installed)))
    return items


def _load_value(cell: CellSummary) -> str:
    value = cell.load_value
    if value is None:
        return cell.load
    return f"{cell.load} {value:g} users" if cell.load == "closed" else f"{cell.load} {value:g} req/s"


def _cpu_text(cell: CellSummary) -> str:
    generator = "n/a" if cell.generator_cpu_pct is None else f"{cell.generator_cpu_pct:.0f} %"
    process, busiest = cell.extra.get("busiest_process"), cell.number("busiest_process_pct")
    server = f"{process} {busiest:.0f} %" if process and busiest is not None else "n/a"
    machine = cell.number("cpu_machine_pct")
    text = f"{generator} / {server} / {'n/a' if machine is None else f'{machine:.0f} %'}"
    if cell.generator_saturated:
        text += " GENERATOR SATURATED"
    if cell.testbed_limit:
        text += f" TESTBED-LIMITED ({cell.testbed_limit})"
    return text


def _memory_text(cell: CellSummary) -> str:
    """RSS per serving process, mean over the window (summary.csv); n/a when not recorded."""
    roles = (("worker", "rss_worker_mb"), ("API", "rss_api_mb"), ("baseline", "rss_baseline_mb"))
    found = [(name, cell.number(column)) for name, column in roles]
    shown = [f"{name} {value:.0f} MiB" for name, value in found if value is not None]
    return ", ".join(shown) or "n/a"


def table_row(cell: CellSummary) -> list[str]:
    stats = cell.stats
    slo = cell.number("slo_e2e_ms")
    return [
        cell.cell_id,
        f"{cell.architecture}/{cell.mode}",
        _load_value(cell),
        cell.config_label,
        str(stats.trials),
        str(cell.requests),
        f"{cell.timeouts} ({percent_text(stats.timeout_rate)})",
        percentile_text(stats, 50),
        percentile_text(stats, 95),
        percentile_text(stats, 99),
        rate_text(stats.throughput),
        "n/a" if cell.ideal_rps is None else f"{cell.ideal_rps:.2f}",
        percent_text(stats.ratio, 0, share=False),
        "n/a"
        if stats.slo_attainment is None
        else f"{percent_text(stats.slo_attainment)}" + (f" (≤ {format_ms(slo)})" if slo else ""),
        rate_text(stats.goodput),
        format_ms(cell.submit_p99_ms),
        format_ms(cell.probe_p99_ms),
        _cpu_text(cell),
        _memory_text(cell),
    ]


METHODOLOGY = (
    """End-to-end latency: for the queued system, from submitting the request to holding the result
    (queue wait + run + polling or long-poll); for the baseline, the one HTTP request. Submit latency
    (POST /chat → 202) and a light /healthz probe are measured separately, to show whether the API stays
    responsive.""",
    """Timeouts: one client deadline for both architectures ({deadline}). A request past it counts as a
    timeout with latency = the deadline; it is never dropped from the percentiles. Warm-up requests are
    excluded from the latency and timeout counts. Throughput is the rate of ok responses that arrive inside
    the measurement window, whenever their request started (a departure rate, free of the error at the
    window's edges); so an overloaded cell can show some throughput although every request that started in
    the window timed out: those answers belong to requests sent during warm-up.""",
    """Closed vs open loop: closed-loop users wait for each answer before sending the next, which hides
    tail latency (coordinated omission); open loop sends Poisson arrivals at a fixed rate whatever the
    system does. Every figure's title says which mode produced it.""",
    """Compare ratios, not absolute times: both architectures ran in this run, on this machine, against
    the same mock upstream, so ratios between them are meaningful; absolute times depend on the machine and
    on the mock's latency model.""",
    """Intervals: every figure shows its 95 % confidence interval as `estimate [low, high]`. Throughput,
    share of ideal and goodput: Student t across the cell's trials (one trial: no interval). Timeouts and
    SLO attainment: Wilson score interval of the pooled counts. Latency percentiles: the distribution-free
    order-statistic interval over the pooled requests, which exists only from 6 (p50), 72 (p95) and 368
    (p99) requests on; below that the table says "n too small". Requests within one trial are not
    independent (a backlog delays its neighbours), so pooled intervals are the optimistic kind; every
    comparison between cells therefore uses the trials' spread instead.""",
    """Common random numbers: trial k of every cell at one load runs under the same seed, so both
    architectures (and every worker count at that load) get the same arrival times, the same requests and,
    from a mock that draws each call's latency from the seed and the request's content, the same upstream
    latency per request. A queued-minus-inline difference is then the mean of the per-trial differences,
    with a paired t interval; the trials run in interleaved rounds, so that drift of a shared machine
    spreads over both sides.""",
    """Verdicts: "did better" only when the interval of the paired difference excludes zero and its
    estimate exceeds the margin (timeouts: 1 point; throughput: 10 % of the load; SLO attainment: 1
    point); "did alike" only when the whole interval lies inside the margin; otherwise "cannot tell from
    this run", with the trials per cell that would decide if the estimate stays where it is. "At least
    90 % of ideal" and "still scaling" (an extra worker adding more than 10 % of a worker's ideal) follow
    the same rule.""",
    """ideal_rps is the physical limit of a cell: W workers / S for the queued system, concurrency / S for
    the baseline, or the client-side bound when lower (open loop: the arrivals actually offered). S is the
    configured upstream time alone, so no measurement can move the ideal: a slower job path shows as a
    lower share of ideal. The job path's own time per request at zero upstream latency, measured once at
    the start of the run (one client, one request at a time), is shown beside it and says how far below
    100 % a healthy system sits. A cell whose whole interval lies above 100 % is flagged as a measurement
    error, with its likely cause.""",
    """Goodput: requests answered ok within the SLO per second (default SLO: the deadline; `ragload bench
    --slo e2e=2s,submit=200ms` sets a tighter one), with the share of requests within it (Wilson
    interval).""",
    """Testbed limits: a cell in which a single-process server (the API, a one-process baseline, the mock,
    Valkey) averaged at least 85 % of a core, or the whole machine at least 90 % of all its cores, is
    flagged TESTBED-LIMITED (table; black boxes on the plots): its figures measure this machine as much as
    the architecture. Such cells stay out of the per-worker slope and the worker counts, and the Answer
    names them.""",
    """Predictions: closed loop with no think time is exact by Little's law (throughput =
    min(users, workers) / S, mean latency = users / throughput); open loop uses M/G/c with the Allen–Cunneen
    approximation (Erlang C M/M/c wait × (1 + CV²) / 2, CV² from the configured latency model; for a
    constant service time M/D/c by Cosmetatos is in reports/queueing.py). Client, broker and worker
    overheads are not modelled, so measurements somewhat below a prediction are expected.""",
    """Cells whose load generator used more than 80 % of a core are flagged (red rings, SATURATED): there
    the generator, not the system, may be the limit.""",
)


def methodology(run: RunData) -> list[str]:
    deadline = f"{run.deadline_s:g} s" if run.deadline_s else "the configured deadline"
    return [" ".join(paragraph.split()).format(deadline=deadline) for paragraph in METHODOLOGY]


def build_content(
    run: RunData,
    answer: list[Verdict],
    verdicts: list[Verdict],
    plots: list[PlotFile],
    upstream: UpstreamSection | None = None,
) -> ReportContent:
    service = run.service_model()
    return ReportContent(
        upstream=upstream or UpstreamSection([], None),
        title=f"ragload report — {run.run_dir.name}",
        synthetic=run.synthetic,
        metadata=metadata_items(run, service),
        answer=answer,
        verdicts=verdicts,
        table=[table_row(cell) for cell in run.cells],
        saturated_rows=[cell.generator_saturated or bool(cell.testbed_limit) for cell in run.cells],
        plots=plots,
        methodology=methodology(run),
    )


def _data_uri(plot: PlotFile) -> str:
    return "data:image/png;base64," + base64.b64encode(plot.path.read_bytes()).decode("ascii")


def _html_table(
    rows: Sequence[list[str]], saturated: Sequence[bool], headers: Sequence[str] = TABLE_HEADERS
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join(
        (SATURATED_TR if flag else "<tr>") + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row, flag in zip(rows, saturated, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _html_items(verdicts: Sequence[Verdict]) -> str:
    return "".join(
        ("<li>" if v.supported else UNSUPPORTED_LI) + f"{html.escape(v.text)}</li>" for v in verdicts
    )


def _html_upstream(section: UpstreamSection) -> str:
    """The upstream section ("" for a run without an upstream record)."""
    if not section.lines and section.plot is None:
        return ""
    esc = html.escape
    items = "".join(f"<li>{esc(line)}</li>" for line in section.lines)
    plot = (
        f'<figure><img alt="{esc(section.plot.title)}" src="{_data_uri(section.plot)}">'
        f"<figcaption>{esc(section.plot.title)}</figcaption></figure>"
        if section.plot is not None
        else ""
    )
    return f"<h2>Upstream</h2><ul>{items}</ul>{plot}"


def _md_upstream(section: UpstreamSection) -> list[str]:
    if not section.lines and section.plot is None:
        return []
    lines = ["## Upstream", ""] + [f"- {line}" for line in section.lines] + [""]
    if section.plot is not None:
        lines += [f"![{section.plot.title}]({section.plot.path.name})", ""]
    return lines


def render_html(content: ReportContent) -> str:
    esc = html.escape
    notice = f'<p class="notice">{esc(SYNTHETIC_NOTICE)}</p>' if content.synthetic else ""
    metadata = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in content.metadata)
    plots = (
        "".join(
            f'<figure><img alt="{esc(p.title)}" src="{_data_uri(p)}">'
            f"<figcaption>{esc(p.title)}</figcaption></figure>"
            for p in content.plots
        )
        or "<p>No plots: the run has no measured cells.</p>"
    )
    method = "".join(f"<li>{esc(m)}</li>" for m in content.methodology)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(content.title)}</title><style>{CSS}</style></head>
<body>
<h1>{esc(content.title)}</h1>
{notice}
<h2>Answer</h2><ul class="verdict">{_html_items(content.answer)}</ul>
<h2>Run</h2><dl>{metadata}</dl>
{_html_upstream(content.upstream)}
<h2>Verdict</h2><ul class="verdict">{_html_items(content.verdicts)}</ul>
{_html_corners(content)}<h2>Summary</h2>{_html_table(content.table, content.saturated_rows)}
<h2>Plots</h2>{plots}
<h2>Methodology</h2><ul>{method}</ul>
</body></html>
"""


def _html_corners(content: ReportContent) -> str:
    if not content.corners_table:
        return ""
    table = _html_table(content.corners_table, [False] * len(content.corners_table), corners.TABLE_HEADERS)
    return (
        f'<h2>Four corners</h2><ul class="verdict">{_html_items(content.corners)}</ul>'
        f"<p>{html.escape(CORNERS_NOTE)}</p>{table}\n"
    )


CORNERS_NOTE = (
    "Memory: RSS in MiB, mean over the measured window, 95 % interval across trials. Per process: one worker "
    "process (queued) or one baseline process (inline); per in-flight job: the workers' (or the baseline's) "
    "whole RSS, supervisors included, over the total concurrency. The queued API is shown apart."
)


def _md_corners(content: ReportContent) -> list[str]:
    if not content.corners_table:
        return []
    headers = corners.TABLE_HEADERS
    lines = ["## Four corners", ""] + _md_items(content.corners) + [CORNERS_NOTE, ""]
    return lines + _md_table(headers, content.corners_table)


def _md_table(headers: Sequence[str], rows: Sequence[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows] + [""]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_items(verdicts: Sequence[Verdict]) -> list[str]:
    return [f"- {v.text}" if v.supported else f"- _{v.text}_" for v in verdicts] + [""]


def render_markdown(content: ReportContent) -> str:
    lines = [f"# {content.title}", ""]
    if content.synthetic:
        lines += [f"> **{SYNTHETIC_NOTICE}**", ""]
    lines += ["## Answer", ""] + _md_items(content.answer)
    lines += ["## Run", ""] + [f"- **{k}**: {_md_cell(v)}" for k, v in content.metadata] + [""]
    lines += _md_upstream(content.upstream)
    lines += ["## Verdict", ""]
    lines += _md_items(content.verdicts)
    lines += _md_corners(content)
    lines += ["## Summary", ""] + _md_table(TABLE_HEADERS, content.table)
    lines += ["## Plots", ""]
    lines += [f"![{p.title}]({p.path.name})\n" for p in content.plots] or [
        "No plots: the run has no measured cells."
    ]
    lines += ["", "## Methodology", ""] + [f"- {m}" for m in content.methodology] + [""]
    return "\n".join(lines)
