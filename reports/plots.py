"""PNG plots of one run (matplotlib, Agg canvas, no pyplot global state).

Every axis label comes from METRICS, and every figure's title names the load mode that produced it.
Every measured point carries its 95 % interval as an error bar (percentiles: order statistic; timeouts:
Wilson; throughput: t across trials). Cells whose load generator was saturated are ringed in red, cells the
testbed limited (CPU) boxed in black, on every plot of cells.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

from reports.concurrency import engine, series_mode
from reports.intervals import Interval
from reports.queueing import Prediction, ServiceModel, predict_closed, predict_open
from reports.run_data import CellSummary, RunData, workers_text
from reports.verdict import best_per_worker_count, per_worker_ideal
from reports.verdict_text import TIMEOUT_ONSET, measured


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str

    @property
    def axis(self) -> str:
        return f"{self.label} [{self.unit}]"


METRICS: dict[str, Metric] = {
    "users": Metric("concurrent users", "users"),
    "rate": Metric("offered arrival rate", "req/s"),
    "p50_ms": Metric("p50 end-to-end latency", "ms"),
    "p95_ms": Metric("p95 end-to-end latency", "ms"),
    "p99_ms": Metric("p99 end-to-end latency", "ms"),
    "mean_ms": Metric("mean end-to-end latency", "ms"),
    "timeout_rate": Metric("timeouts", "% of requests"),
    "throughput_rps": Metric("throughput (ok responses)", "req/s"),
    "workers": Metric("RQ workers", "workers"),
    "probe_p99_ms": Metric("probe p99 (GET /healthz)", "ms"),
    "submit_p99_ms": Metric("submit p99 (POST /chat → 202)", "ms"),
    "queue_depth": Metric("queue depth", "jobs waiting"),
    "t": Metric("time since cell start", "s"),
}
LOAD_AXIS = {"closed": "users", "open": "rate"}
LOAD_TITLE = {"closed": "closed loop (fixed users, no think time)", "open": "open loop (Poisson arrivals)"}
DEFAULT_DPI = 80  # small committed PNGs; the plots stay legible at this size
FIG_WIDTH_IN = 10.0
PNG_COLOURS = 64  # plots use a handful of colours plus anti-aliasing shades; 64 keeps them indistinguishable
MAX_DEPTH_LINES = 6  # more queue-depth traces than this in one panel are unreadable
# every file name write_plots may produce (a rebuild deletes these first, nothing else)
PLOT_PATTERNS = (
    "latency_*.png",
    "timeouts_*.png",
    "responsiveness_*.png",
    "throughput_workers.png",
    "queue_depth.png",
    "corners_*.png",  # reports/corner_plots.py
)
SATURATED_STYLE: dict[str, Any] = {
    "s": 160,
    "facecolors": "none",
    "edgecolors": "red",
    "linewidths": 1.6,
    "zorder": 5,
}
TESTBED_STYLE: dict[str, Any] = {
    "s": 220,
    "marker": "s",
    "facecolors": "none",
    "edgecolors": "black",
    "linewidths": 1.6,
    "zorder": 5,
}
TESTBED_LABEL = "testbed-limited (CPU ≥ 85 % of a core or machine ≥ 90 %)"


@dataclass(frozen=True)
class PlotFile:
    path: Path
    title: str


def new_figure(panels: int, height_in: float = 3.6) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(FIG_WIDTH_IN, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def save(figure: Figure, path: Path, title: str, dpi: int) -> PlotFile:
    """Render, then store as a palette PNG: line plots look the same at about a third of the size."""
    figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(
            PNG_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        palette.save(path, format="PNG", optimize=True)
    return PlotFile(path, title)


def xy(points: Iterable[tuple[float | None, float | None]]) -> tuple[list[float], list[float]]:
    """Two plottable lists from (x, y) pairs, leaving out pairs with a missing value."""
    kept = [(x, y) for x, y in points if x is not None and y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def log_axis(axes: Axes) -> None:
    """Log scale with plain tick labels (200, 500, 1000 rather than 10^3)."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())


def figure_legend(figure: Figure, axes: Sequence[Axes], extra: Sequence[Line2D] = ()) -> None:
    """One legend under the panels, each label once."""
    handles: dict[str, Any] = {}
    for one in axes:
        for handle, label in zip(*one.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    for handle in extra:
        handles.setdefault(str(handle.get_label()), handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3, fontsize=7)


def series_of(cells: Iterable[CellSummary]) -> dict[str, list[CellSummary]]:
    """Lines of a "vs load" plot. A queued mode whose worker count grows with the load (one cell per worker
    count) is one line; otherwise each configuration (worker count, baseline processes/threads) is a line."""
    by_mode: dict[tuple[str, str], list[CellSummary]] = defaultdict(list)
    for cell in cells:
        by_mode[(cell.architecture, series_mode(cell))].append(cell)
    lines: dict[str, list[CellSummary]] = {}
    for (architecture, mode), group in sorted(by_mode.items()):
        configs: dict[str, list[CellSummary]] = defaultdict(list)
        for cell in group:
            configs[cell.config_label].append(cell)
        if architecture == "queued" and len(configs) > 1 and all(len(c) == 1 for c in configs.values()):
            lines[f"{architecture}/{mode} (workers grow with load)"] = group
            continue
        for config, members in sorted(configs.items(), key=lambda item: item[1][0].workers or 0):
            lines[f"{architecture}/{mode}" + (f" {config}" if config else "")] = members
    return {name: sorted(members, key=lambda c: c.load_value or 0) for name, members in lines.items()}


def error_bars(points: Sequence[tuple[float, Interval | None]]) -> list[list[float]]:
    """matplotlib's yerr ([below…], [above…]) for points drawn at their estimates (0 without bounds)."""
    below, above = [], []
    for y, interval in points:
        low = interval.low if interval is not None and interval.low is not None else y
        high = interval.high if interval is not None and interval.high is not None else y
        below.append(max(0.0, y - low))
        above.append(max(0.0, high - y))
    return [below, above]


def mark_flags(
    axes: Axes,
    cells: Sequence[CellSummary],
    x: Callable[[CellSummary], float | None],
    value: Callable[[CellSummary], float | None],
    drawn: set[str],
) -> None:
    """Red rings on generator-saturated points, black boxes on testbed-limited ones (each label once)."""
    for flag, style, label in (
        (lambda c: c.generator_saturated, SATURATED_STYLE, "generator saturated (> 80 % CPU)"),
        (lambda c: bool(c.testbed_limit), TESTBED_STYLE, TESTBED_LABEL),
    ):
        flag_x, flag_y = xy((x(c), value(c)) for c in cells if flag(c))
        if flag_x:
            axes.scatter(flag_x, flag_y, label=None if label in drawn else label, **style)
            drawn.add(label)


def plot_vs_load(
    axes: Axes,
    lines: dict[str, list[CellSummary]],
    value: Callable[[CellSummary], float | None],
    interval: Callable[[CellSummary], Interval | None] | None = None,
) -> bool:
    """One line per series, with error bars when `interval` is given; flagged points marked. False when
    nothing was drawn."""
    drawn = False
    labels: set[str] = set()
    for name, cells in lines.items():
        kept = [c for c in cells if c.load_value is not None and value(c) is not None]
        if not kept:
            continue
        xs = [c.load_value or 0.0 for c in kept]
        ys = [value(c) or 0.0 for c in kept]
        yerr = error_bars([(y, interval(c)) for y, c in zip(ys, kept, strict=True)]) if interval else None
        axes.errorbar(xs, ys, yerr=yerr, marker="o", markersize=4, capsize=3, label=name)
        drawn = True
        mark_flags(axes, kept, lambda c: c.load_value, value, labels)
    return drawn


def _no_data(axes: Axes, what: str) -> None:
    axes.text(0.5, 0.5, f"{what}: not recorded", ha="center", va="center", transform=axes.transAxes)


def latency_figure(
    cells: Sequence[CellSummary], load: str, deadline_s: float | None, out: Path, dpi: int
) -> PlotFile:
    figure, panels = new_figure(3, height_in=4.2)
    lines = series_of(cells)
    for axes, p in zip(panels, (50, 95, 99), strict=True):
        column = f"p{p}_ms"

        def bounds(cell: CellSummary, p: int = p) -> Interval | None:
            return cell.stats.percentile(p)

        if plot_vs_load(axes, lines, attrgetter(column), bounds):
            log_axis(axes)
            if deadline_s:
                axes.axhline(deadline_s * 1000, color="grey", linestyle="--", linewidth=1, label="deadline")
        else:
            _no_data(axes, column)
        axes.set_xlabel(METRICS[LOAD_AXIS[load]].axis)
        axes.set_ylabel(METRICS[column].axis)
    figure_legend(figure, panels)
    return save(figure, out / f"latency_{load}.png", f"Latency percentiles vs load — {LOAD_TITLE[load]}", dpi)


def timeout_figure(cells: Sequence[CellSummary], load: str, out: Path, dpi: int) -> PlotFile:
    figure, (axes,) = new_figure(1, height_in=4.0)
    drawn = plot_vs_load(
        axes,
        series_of(cells),
        lambda c: None if c.timeout_rate is None else 100 * c.timeout_rate,
        lambda c: None if c.stats.timeout_rate is None else c.stats.timeout_rate.scaled(100),
    )
    axes.axhline(
        100 * TIMEOUT_ONSET, color="grey", linestyle=":", linewidth=1, label="1 % (verdict threshold)"
    )
    axes.set_xlabel(METRICS[LOAD_AXIS[load]].axis)
    axes.set_ylabel(METRICS["timeout_rate"].axis)
    if not drawn:
        _no_data(axes, "timeouts")
    figure_legend(figure, [axes])
    return save(figure, out / f"timeouts_{load}.png", f"Timeout rate vs load — {LOAD_TITLE[load]}", dpi)


def responsiveness_figure(cells: Sequence[CellSummary], load: str, out: Path, dpi: int) -> PlotFile:
    figure, panels = new_figure(2, height_in=4.0)
    lines = series_of(cells)
    for axes, column in zip(panels, ("probe_p99_ms", "submit_p99_ms"), strict=True):
        if plot_vs_load(axes, lines, attrgetter(column)):
            log_axis(axes)
        else:
            _no_data(axes, METRICS[column].label)
        axes.set_xlabel(METRICS[LOAD_AXIS[load]].axis)
        axes.set_ylabel(METRICS[column].axis)
    figure_legend(figure, panels)
    title = f"API responsiveness vs load — {LOAD_TITLE[load]}"
    return save(figure, out / f"responsiveness_{load}.png", title, dpi)


def _prediction(cell: CellSummary, service: ServiceModel) -> Prediction | None:
    if cell.workers is None:
        return None
    if cell.load == "closed" and cell.users is not None:
        return predict_closed(cell.users, cell.workers, service)
    if cell.load == "open" and cell.rate is not None:
        return predict_open(cell.rate, cell.workers, service)
    return None


def throughput_figure(
    cells: Sequence[CellSummary], service: ServiceModel | None, out: Path, dpi: int
) -> PlotFile | None:
    """Left: throughput vs workers with ideal_rps and the queueing prediction; right: mean latency, same."""
    queued = [c for c in measured(cells) if c.architecture == "queued" and c.workers is not None]
    if not queued:
        return None
    figure, (left, right) = new_figure(2, height_in=4.4)
    groups: dict[tuple[str, str], list[CellSummary]] = defaultdict(list)
    for cell in queued:
        groups[(series_mode(cell), cell.load)].append(cell)
    labels: set[str] = set()
    for (mode, load), group in sorted(groups.items()):
        best = [c for c in best_per_worker_count(group) if c.throughput_rps is not None]
        ys = [c.throughput_rps or 0.0 for c in best]
        bars = left.errorbar(
            [float(c.workers or 0) for c in best],
            ys,
            yerr=error_bars([(y, c.stats.throughput) for y, c in zip(ys, best, strict=True)]),
            marker="o",
            capsize=3,
            label=f"queued/{mode}, {load} loop",
        )
        color = to_hex(bars.lines[0].get_color())
        mark_flags(left, best, lambda c: float(c.workers or 0), lambda c: c.throughput_rps, labels)
        left.plot(*xy((c.workers, c.ideal_rps) for c in best), "x", color=color, markersize=7)
        _draw_predictions(left, right, best, service, color)
    ideal = per_worker_ideal([c for c in queued if engine(c) == "rq"], service)  # the W/S line: RQ's
    if ideal is not None:
        span = [0, max(c.workers or 0 for c in queued)]
        left.plot(
            span, [0, span[1] * ideal], color="grey", linestyle="--", label=f"ideal W/S ({ideal:.2f}/worker)"
        )
    for axes, column in ((left, "throughput_rps"), (right, "mean_ms")):
        axes.set_xlabel(METRICS["workers"].axis)
        axes.set_ylabel(METRICS[column].axis)
    log_axis(right)
    keys = [
        Line2D([], [], color="black", marker="x", linestyle="none", label="× ideal_rps of the cell"),
        Line2D([], [], color="black", linestyle=":", label="queueing prediction"),
        Line2D([], [], color="black", marker="o", label="measured (bars: 95 % interval across trials)"),
    ]
    figure_legend(figure, [left], keys)
    loads = " and ".join(f"{load} loop" for load in sorted({c.load for c in queued}))
    model = f"; service time {service.source} (mean {service.mean_s * 1000:.0f} ms)" if service else ""
    title = f"Throughput and mean latency vs workers (best cell per worker count)\n{loads}{model}"
    return save(figure, out / "throughput_workers.png", title, dpi)


def _draw_predictions(
    left: Axes, right: Axes, best: Sequence[CellSummary], service: ServiceModel | None, color: str
) -> None:
    right.plot(*xy((c.workers, c.number("mean_ms")) for c in best), marker="o", color=color)
    if service is None:
        return
    predicted = [(c.workers, p) for c in best if (p := _prediction(c, service)) is not None]
    left.plot(*xy((w, p.throughput_rps) for w, p in predicted), linestyle=":", color=color)
    right.plot(*xy((w, _ms(p.mean_latency_s)) for w, p in predicted), linestyle=":", color=color)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _pick_evenly(items: Sequence[CellSummary], count: int) -> list[CellSummary]:
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def queue_depth_figure(run: RunData, out: Path, dpi: int) -> PlotFile | None:
    queued = [c for c in run.cells if c.architecture == "queued"]
    traces: dict[tuple[str, str], list[tuple[CellSummary, list[dict[str, float | None]]]]] = defaultdict(list)
    for cell in sorted(queued, key=lambda c: (c.workers or 0, c.load_value or 0)):
        rows = [
            r
            for r in run.server_rows(cell.runs[0].trial_id or cell.cell_id)
            if r.get("t") is not None and r.get("queue_depth") is not None
        ]
        if rows:
            traces[(series_mode(cell), cell.load)].append((cell, rows))
    if not traces:
        return None
    figure, panels = new_figure(len(traces), height_in=3.4)
    for axes, ((mode, load), entries) in zip(panels, sorted(traces.items()), strict=True):
        chosen = {id(c) for c in _pick_evenly([cell for cell, _ in entries], MAX_DEPTH_LINES)}
        for cell, rows in entries:
            if id(cell) in chosen:
                axes.plot(
                    *xy((r["t"], r["queue_depth"]) for r in rows),
                    linewidth=1.2,
                    label=f"{workers_text(cell.workers)}, {_load_text(cell)}",
                )
        axes.set_title(f"queued/{mode}, {load} loop", fontsize=9)
        axes.set_xlabel(METRICS["t"].axis)
        axes.set_ylabel(METRICS["queue_depth"].axis)
        axes.legend(fontsize=7)
    return save(
        figure,
        out / "queue_depth.png",
        "Queue depth over time (server.csv of each cell's first trial, sampled every 0.5 s)",
        dpi,
    )


def _load_text(cell: CellSummary) -> str:
    value = cell.load_value
    return "?" if value is None else f"{value:g} users" if cell.load == "closed" else f"{value:g} req/s"


def write_plots(run: RunData, out: Path, dpi: int = DEFAULT_DPI) -> list[PlotFile]:
    out.mkdir(parents=True, exist_ok=True)
    usable = measured(run.cells)
    files: list[PlotFile] = []
    for load in ("closed", "open"):
        cells = [c for c in usable if c.load == load]
        if cells:
            files.append(latency_figure(cells, load, run.deadline_s, out, dpi))
            files.append(timeout_figure(cells, load, out, dpi))
            files.append(responsiveness_figure(cells, load, out, dpi))
    optional = (
        throughput_figure(run.cells, run.service_model(), out, dpi),
        queue_depth_figure(run, out, dpi),
    )
    files.extend(plot for plot in optional if plot is not None)
    return files
