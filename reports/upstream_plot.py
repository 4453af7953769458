"""The report's upstream section: time to first token and total latency of the chat calls against the calls in
flight at their start (the mock's call log, medians with their intervals per bin), the capacity model's
curve beside them and its knee marked; one line per upstream describing its model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reports.plots import PlotFile, error_bars, figure_legend, log_axis, new_figure, save
from reports.run_data import RunData
from reports.upstream import binned, calls_by_upstream, describe, upstream_models

PLOT_NAME = "upstream.png"
PANELS = (("ttft", "time to first token", "ttft_ms"), ("latency", "total latency", "latency_ms"))
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")


@dataclass(frozen=True)
class UpstreamSection:
    lines: list[str]  # what each upstream is, then how many calls the plot rests on
    plot: PlotFile | None


def upstream_section(run: RunData, out: Path, dpi: int) -> UpstreamSection:
    """The section's lines and plot; empty lines and no plot for a run without an upstream record."""
    models = upstream_models(run)
    calls = calls_by_upstream(run)
    lines = [describe(model) for _, model in sorted(models.items())]
    counted = {name: len(found) for name, found in calls.items() if found}
    if counted:
        lines.append(
            "Measured: "
            + "; ".join(f"{n} chat calls on `{name or 'the mock'}`" for name, n in sorted(counted.items()))
            + " (the cells' measured windows, all trials), each placed by the calls in flight at its start."
        )
    return UpstreamSection(lines, _figure(run, out, dpi) if counted else None)


def _figure(run: RunData, out: Path, dpi: int) -> PlotFile | None:
    models = upstream_models(run)
    calls = calls_by_upstream(run)
    figure, panels = new_figure(len(PANELS), height_in=3.8)
    for colour, (name, found) in zip(COLOURS, sorted(calls.items()), strict=False):
        bins = binned(found)
        model = models.get(name)
        for axes, (key, _, curve_key) in zip(panels, PANELS, strict=True):
            points = [(b.middle, getattr(b, key)) for b in bins if getattr(b, key) is not None]
            if points:
                xs = [x for x, _ in points]
                ys = [interval.estimate for _, interval in points]
                axes.errorbar(
                    xs,
                    ys,
                    yerr=error_bars([(interval.estimate, interval) for _, interval in points]),
                    fmt="o",
                    markersize=4,
                    capsize=2,
                    color=colour,
                    label=f"`{name or 'mock'}`: median of the calls measured (95 % interval)",
                )
            if model is not None and model.has_knee and model.curve:
                axes.plot(
                    [p["concurrency"] for p in model.curve],
                    [p[curve_key] for p in model.curve],
                    linestyle="--",
                    color=colour,
                    label=f"`{name}`: capacity model, closed-loop mean",
                )
                axes.axvline(
                    model.knee_concurrency or 0,
                    color=colour,
                    linestyle=":",
                    label=f"`{name}`: knee ({model.knee_concurrency} calls, {model.knee_rps or 0:.1f} req/s)",
                )
    for axes, (_, label, _) in zip(panels, PANELS, strict=True):
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        log_axis(axes)
        axes.set_xlabel("chat calls in flight at the call's start [calls]")
        axes.set_ylabel(f"chat call {label} [ms]")
        axes.set_title(f"{label} vs calls in flight", fontsize=9)
    figure_legend(figure, panels)
    return save(
        figure,
        out / PLOT_NAME,
        "The upstream: chat call time vs calls in flight (mock's call log; all cells and trials)",
        dpi,
    )
