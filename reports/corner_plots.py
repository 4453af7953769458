"""The four corners' plots: throughput and p99 against total concurrency and against processes, one line per
corner and one figure per load mode (reports/corners.py says when the section exists).

Per corner and x, the cell with the highest throughput there (the corner's best configuration at that
size); error bars are the 95 % intervals of reports/cell_stats.py (throughput: t across trials; p99: order
statistic), flagged cells marked as on every plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from reports.concurrency import concurrency
from reports.corners import by_upstream, corner_cells
from reports.intervals import Interval
from reports.plots import (
    FIG_WIDTH_IN,
    LOAD_TITLE,
    METRICS,
    PlotFile,
    error_bars,
    figure_legend,
    log_axis,
    mark_flags,
    save,
)
from reports.run_data import CellSummary, RunData

# one colour and marker per corner, the same on every panel (markers tell them apart in a palette PNG too)
CORNER_STYLE = {
    "inline threadpool": ("tab:blue", "s"),
    "inline asyncio": ("tab:orange", "o"),
    "queued RQ": ("tab:green", "^"),
    "queued SAQ": ("tab:red", "D"),
}
X_AXES: dict[str, tuple[str, Callable[[CellSummary], float | None]]] = {
    "total concurrency": ("total concurrency [requests at once]", lambda c: concurrency(c).total),
    "processes": ("processes [worker or baseline processes]", lambda c: concurrency(c).processes),
}
Y_AXES: dict[str, tuple[Callable[[CellSummary], float | None], Callable[[CellSummary], Interval | None]]] = {
    "throughput_rps": (lambda c: c.throughput_rps, lambda c: c.stats.throughput),
    "p99_ms": (lambda c: c.p99_ms, lambda c: c.stats.percentile(99)),
}


def best_per_x(cells: Sequence[CellSummary], x: Callable[[CellSummary], float | None]) -> list[CellSummary]:
    best: dict[float, CellSummary] = {}
    for cell in cells:
        at = x(cell)
        if at is not None and (at not in best or (cell.throughput_rps or 0) > (best[at].throughput_rps or 0)):
            best[at] = cell
    return [best[at] for at in sorted(best)]


def _panel(
    axes: Axes, found: dict[str, list[CellSummary]], x: Callable[[CellSummary], float | None], column: str
) -> None:
    value, interval = Y_AXES[column]
    flagged: set[str] = set()
    for name, cells in found.items():
        kept = [c for c in best_per_x(cells, x) if value(c) is not None]
        if not kept:
            continue
        ys = [value(c) or 0.0 for c in kept]
        axes.errorbar(
            [x(c) or 0.0 for c in kept],
            ys,
            yerr=error_bars([(y, interval(c)) for y, c in zip(ys, kept, strict=True)]),
            color=CORNER_STYLE[name][0],
            marker=CORNER_STYLE[name][1],
            markersize=5,
            capsize=3,
            label=name,
        )
        mark_flags(axes, kept, x, value, flagged)
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_ylabel(METRICS[column].axis)
    if column == "p99_ms":
        log_axis(axes)


def corners_figure(
    found: dict[str, list[CellSummary]], load: str, out: Path, dpi: int, suffix: str = ""
) -> PlotFile:
    figure = Figure(figsize=(FIG_WIDTH_IN, 7.2), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, 2, squeeze=False)
    for row, (x_label, x) in zip(grid, X_AXES.values(), strict=True):
        for axes, column in zip(row, Y_AXES, strict=True):
            _panel(axes, found, x, column)
            axes.set_xlabel(x_label)
    figure_legend(figure, [axes for row in grid for axes in row])
    title = (
        f"Four corners: throughput and p99 vs total concurrency and vs processes — {LOAD_TITLE[load]}"
        f"{f' on {suffix[1:]}' if suffix else ''}\n"
        "best cell per corner and x, bars: 95 % intervals; concurrency: workers × jobs per worker, "
        "processes × threads, asyncio: load offered"
    )
    return save(figure, out / f"corners_{load}{suffix}.png", title, dpi)


def write_corner_plots(run: RunData, out: Path, dpi: int) -> list[PlotFile]:
    groups = by_upstream(run.cells)
    files = []
    for upstream, members in groups.items():
        for load in ("closed", "open"):
            found = {
                name: kept
                for name, cells in corner_cells(members).items()
                if (kept := [c for c in cells if c.load == load])
            }
            if len(found) >= 2:
                suffix = f"_{upstream}" if len(groups) > 1 and upstream else ""
                files.append(corners_figure(found, load, out, dpi, suffix))
    return files
