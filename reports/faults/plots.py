"""One PNG per fault scenario: outcomes over time, with what the runner did marked on a shared time axis.

Panels, top to bottom: cumulative accepted and finished; retries, dead-lettered and jobs unaccounted for
(accepted − finished − dead-lettered − queued − running); workers and queue depth; for a scenario with an
LLM outage (or any breaker state but closed), the breaker state as a coloured band. Stretches without
samples (broker down) are gaps, shaded and labelled, never zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from reports.faults.data import FaultScenario, TimelineRow
from reports.plots import DEFAULT_DPI, FIG_WIDTH_IN, PlotFile, save

PLOT_PATTERN = "faults_*.png"  # every file name write_fault_plots may produce
TIME_AXIS = "time since scenario start [s]"
BROKER_DOWN_COLOUR = "#9e9e9e"
WINDOW_STYLES = {  # shaded windows: (runner events that open and close them, colour, legend label)
    "llm_errors": (("llm_errors_on", "llm_errors_off"), "#ffb74d", "LLM error burst"),
    "llm_outage": (("llm_outage_on", "llm_outage_off"), "#e57373", "LLM outage"),
    "broker_restart": (("broker_stop", "broker_start"), BROKER_DOWN_COLOUR, "broker down"),
}
BREAKER_COLOURS = {"closed": "#66bb6a", "half-open": "#ffa726", "open": "#e53935", "unknown": "#e0e0e0"}
OUTCOME_LINES = (("accepted", "#1e88e5"), ("finished", "#43a047"))
SIDE_LINES = (("retried", "#8e24aa"), ("dead_lettered", "#fb8c00"))
GAP_TEXT = "broker down:\nnot sampled"
UNACCOUNTED_LABEL = "unaccounted (lost so far, or waiting for a retry)"


@dataclass(frozen=True)
class Window:
    start: float
    end: float


def _series(rows: Sequence[TimelineRow], column: str) -> list[float]:
    """A timeline column with NaN where it was not sampled: matplotlib draws a gap there, not a zero."""
    values = [getattr(row, column) if row.sampled or column == "workers" else None for row in rows]
    return [math.nan if value is None else float(value) for value in values]


def unsampled_windows(rows: Sequence[TimelineRow]) -> list[Window]:
    """From the last sample before each gap to the first one after it: where nothing is known."""
    windows: list[Window] = []
    start: float | None = None
    previous_t = rows[0].t if rows else 0.0
    for row in rows:
        if not row.sampled and start is None:
            start = previous_t
        elif row.sampled and start is not None:
            windows.append(Window(start, row.t))
            start = None
        if row.sampled:
            previous_t = row.t
    if start is not None:
        windows.append(Window(start, rows[-1].t))
    return windows


def _load_end(scenario: FaultScenario) -> float:
    ends = scenario.events_of("load_end")
    if ends:
        return ends[0].t
    spec = scenario.spec
    return spec.duration_s if spec and spec.duration_s is not None else scenario.end_t


def event_windows(scenario: FaultScenario, kind: str) -> list[Window]:
    """What the runner did (events.csv); the plan in scenario.json when events.csv has no such events."""
    (on, off), _, _ = WINDOW_STYLES[kind]
    starts = [event.t for event in scenario.events_of(on)]
    ends = [event.t for event in scenario.events_of(off)]
    if starts:
        return [
            Window(start, next((end for end in ends if end >= start), scenario.end_t)) for start in starts
        ]
    planned: list[Window] = []
    for event in scenario.spec.events_of(kind) if scenario.spec else []:
        if kind == "broker_restart" and event.at_s is not None:
            planned.append(Window(event.at_s, event.at_s + (event.down_s or 0.0)))
        elif event.from_s is not None:
            planned.append(Window(event.from_s, _load_end(scenario) if event.to_s is None else event.to_s))
    return planned


def kill_times(scenario: FaultScenario) -> list[float]:
    kills = [event.t for event in scenario.events_of("kill_worker")]
    if kills or scenario.spec is None:
        return kills
    planned: list[float] = []
    for event in scenario.spec.events_of("kill_worker"):
        if event.every_s:
            t, end = event.from_s or 0.0, event.to_s if event.to_s is not None else _load_end(scenario)
            while t <= end:
                planned.append(t)
                t += event.every_s
    return planned


def _shade(axes: Sequence[Axes], scenario: FaultScenario) -> list[Patch]:
    legend: list[Patch] = []
    for kind, (_, colour, label) in WINDOW_STYLES.items():
        windows = event_windows(scenario, kind)
        for window in windows:
            for one in axes:
                one.axvspan(window.start, window.end, color=colour, alpha=0.18, linewidth=0)
        if windows:
            legend.append(Patch(color=colour, alpha=0.35, label=label))
    gaps = unsampled_windows(scenario.timeline)
    for window in gaps:
        for one in axes:
            one.axvspan(window.start, window.end, facecolor="none", edgecolor="#616161", hatch="//", lw=0)
        middle, transform = (window.start + window.end) / 2, axes[0].get_xaxis_transform()
        axes[0].text(middle, 0.5, GAP_TEXT, transform=transform, ha="center", va="center", fontsize=7)
    if gaps:
        legend.append(
            Patch(facecolor="none", edgecolor="#616161", hatch="//", label="no samples (broker down)")
        )
    return legend


def _mark_kills(axes: Sequence[Axes], scenario: FaultScenario) -> list[Patch]:
    times = kill_times(scenario)
    for one in axes:
        for t in times:
            one.axvline(t, ymin=0.9, ymax=1.0, color="black", linewidth=1.2)
    return [Patch(color="black", label="worker SIGKILL (tick at top)")] if times else []


def _mark_load(axes: Axes, scenario: FaultScenario) -> None:
    for event in scenario.events_of("load_step") + scenario.events_of("load_end"):
        axes.axvline(event.t, color="#757575", linestyle=":", linewidth=1)
        text = event.kind.replace("_", " ") + (f" {event.detail}" if event.detail else "")
        axes.text(event.t, 0.02, f" {text}", transform=axes.get_xaxis_transform(), fontsize=6, va="bottom")


def _outcome_panels(top: Axes, side: Axes, rows: Sequence[TimelineRow]) -> None:
    t = [row.t for row in rows]
    for column, colour in OUTCOME_LINES:
        top.plot(t, _series(rows, column), color=colour, label=column.replace("_", "-"))
    for column, colour in SIDE_LINES:
        side.plot(t, _series(rows, column), color=colour, label=column.replace("_", "-"))
    unaccounted = [math.nan if (v := row.unaccounted) is None else v for row in rows]
    side.plot(t, unaccounted, color="#d50000", linewidth=1.6, label=UNACCOUNTED_LABEL)
    top.set_ylabel("jobs (cumulative)")
    side.set_ylabel("jobs")


def _capacity_panel(axes: Axes, rows: Sequence[TimelineRow]) -> None:
    t = [row.t for row in rows]
    axes.step(t, _series(rows, "workers"), where="post", color="#3949ab", label="workers")
    axes.set_ylabel("workers")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)
    depth = axes.twinx()
    depth.plot(t, _series(rows, "queued"), color="#00897b", linewidth=1, label="queue depth")
    depth.set_ylabel("queue depth [jobs]")
    depth.set_ylim(bottom=0)
    handles = axes.get_legend_handles_labels()[0] + depth.get_legend_handles_labels()[0]
    axes.legend(handles=handles, loc="upper right", fontsize=7)


def wants_breaker_band(scenario: FaultScenario) -> bool:
    states = {row.breaker for row in scenario.timeline if row.breaker}
    has_outage = bool(scenario.spec and scenario.spec.events_of("llm_outage"))
    return has_outage or bool(states - {"closed", "unknown"})


def _breaker_band(axes: Axes, rows: Sequence[TimelineRow]) -> None:
    for row, following in zip(rows, rows[1:], strict=False):
        state = row.breaker or "unknown"
        colour = BREAKER_COLOURS.get(state, BREAKER_COLOURS["unknown"])
        axes.broken_barh([(row.t, following.t - row.t)], (0, 1), color=colour, linewidth=0)
    axes.set_yticks([])
    axes.set_ylabel("breaker", rotation=0, ha="right", va="center")
    seen = {row.breaker or "unknown" for row in rows}
    patches = [Patch(color=c, label=s) for s, c in BREAKER_COLOURS.items() if s in seen]
    axes.legend(handles=patches, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)


def scenario_figure(scenario: FaultScenario, out: Path, dpi: int = DEFAULT_DPI) -> PlotFile:
    band = wants_breaker_band(scenario)
    ratios = [3.0, 2.0, 2.0] + ([0.45] if band else [])
    figure = Figure(figsize=(FIG_WIDTH_IN, 7.5 + (0.6 if band else 0)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(len(ratios), 1, sharex=True, height_ratios=ratios))
    top, side, capacity = axes[:3]
    rows = scenario.timeline
    _outcome_panels(top, side, rows)
    _capacity_panel(capacity, rows)
    if band:
        _breaker_band(axes[3], rows)
    keys = _shade(axes, scenario) + _mark_kills(axes[:3], scenario)
    _mark_load(capacity, scenario)
    top.legend(handles=top.get_legend_handles_labels()[0] + keys, loc="upper left", fontsize=7)
    side.legend(loc="upper left", fontsize=7)
    if not rows:
        top.text(0.5, 0.5, "timeline.csv: no samples", ha="center", va="center", transform=top.transAxes)
    axes[-1].set_xlabel(TIME_AXIS)
    description = scenario.spec.description if scenario.spec else ""
    lost = scenario.outcome.lost if scenario.outcome else 0
    title = f"{scenario.name}: outcomes over time" + (f" — {lost:,} accepted jobs LOST" if lost else "")
    title += f"\n{description}" if description else ""
    return save(figure, out / f"faults_{scenario.folder.name}.png", title, dpi)


def write_fault_plots(
    scenarios: Sequence[FaultScenario], out: Path, dpi: int = DEFAULT_DPI
) -> list[PlotFile]:
    out.mkdir(parents=True, exist_ok=True)
    return [scenario_figure(scenario, out, dpi) for scenario in scenarios]
