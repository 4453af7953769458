"""Plain-language verdict lines, computed from summary.csv alone.

Each line is either a finding the data supports or an explicit "cannot say" with the reason; no line is
printed that the run cannot back. Architectures are compared by ratios within the run (docs/architecture.md,
"Measurement rules"); the queued vs sync lines are in reports/comparison.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from reports.comparison import outcome_comparison, p99_ratio
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData, workers_text
from reports.verdict_text import (
    LOAD_NAMES,
    TIMEOUT_ONSET,
    Verdict,
    format_load,
    measured,
)

SCALING_STOP = 0.10  # a worker "stops paying" when it adds less than 10 % of one worker's ideal throughput
IDEAL_TOLERANCE = 0.10  # the acceptance bound: queued throughput within 10 % of ideal_rps


def series_groups(
    cells: Iterable[CellSummary], *, by_config: bool
) -> dict[tuple[str, ...], list[CellSummary]]:
    """Cells keyed by (architecture, mode, load), plus the configuration label when `by_config`."""
    groups: dict[tuple[str, ...], list[CellSummary]] = defaultdict(list)
    for cell in cells:
        key = (cell.architecture, cell.mode, cell.load) + ((cell.config_label,) if by_config else ())
        groups[key].append(cell)
    return dict(groups)


def baseline_timeouts(cells: Sequence[CellSummary], deadline_s: float | None) -> list[Verdict]:
    """Per baseline mode, load mode and configuration: the first load with more than 1 % timeouts."""
    topic = "baseline timeouts"
    own = measured(c for c in cells if c.architecture == "sync")
    if not own:
        return [
            Verdict(
                topic,
                "No baseline (sync) cell with requests in this run: cannot say where the "
                "baseline starts timing out.",
                supported=False,
            )
        ]
    deadline = f"the {deadline_s:g} s deadline" if deadline_s else "the deadline"
    lines = []
    for (_, mode, load, config), group in sorted(series_groups(own, by_config=True).items()):
        group.sort(key=lambda c: c.load_value or 0)
        name = f"sync/{mode}" + (f" ({config})" if config else "") + f", {LOAD_NAMES.get(load, load)}"
        onset = next((c for c in group if (c.timeout_rate or 0) > TIMEOUT_ONSET), None)
        if onset is None:
            lines.append(
                Verdict(
                    topic,
                    f"{name}: no load tested produced more than 1 % timeouts "
                    f"(up to {format_load(group[-1])}).",
                )
            )
            continue
        before = [c for c in group if (c.load_value or 0) < (onset.load_value or 0)]
        previous = (
            f"; at {format_load(before[-1])}: {100 * (before[-1].timeout_rate or 0):.1f} %"
            if before
            else " (already at the lowest load tested)"
        )
        lines.append(
            Verdict(
                topic,
                f"{name}: starts timing out at {format_load(onset)} — "
                f"{100 * (onset.timeout_rate or 0):.1f} % of requests passed {deadline}"
                f"{previous}.",
            )
        )
    return lines


def queued_timeouts(cells: Sequence[CellSummary]) -> list[Verdict]:
    topic = "queued timeouts"
    own = measured(c for c in cells if c.architecture == "queued")
    if not own:
        return []  # worker_scaling already says there are no queued cells
    timing_out = [c for c in own if (c.timeout_rate or 0) > TIMEOUT_ONSET]
    if not timing_out:
        return [Verdict(topic, f"No queued cell had more than 1 % timeouts ({len(own)} cells).")]
    names = ", ".join(
        f"{c.mode} {workers_text(c.workers)} at {format_load(c)} ({100 * (c.timeout_rate or 0):.1f} %)"
        for c in timing_out
    )
    return [Verdict(topic, f"Queued cells with more than 1 % timeouts: {names}.")]


def per_worker_ideal(cells: Sequence[CellSummary], service: ServiceModel | None) -> float | None:
    """Throughput one worker could give at most (1/S)."""
    if service is not None:
        return service.rate
    ratios = [c.ideal_rps / c.workers for c in cells if c.ideal_rps and c.workers]
    return max(ratios) if ratios else None


def best_per_worker_count(cells: Iterable[CellSummary]) -> list[CellSummary]:
    """For each worker count, the cell with the highest throughput (the saturation throughput)."""
    best: dict[int, CellSummary] = {}
    for cell in cells:
        if cell.workers is None or cell.throughput_rps is None:
            continue
        if cell.workers not in best or cell.throughput_rps > (best[cell.workers].throughput_rps or 0):
            best[cell.workers] = cell
    return [best[w] for w in sorted(best)]


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx if sxx else 0.0


def per_worker_gain(cells: Sequence[CellSummary]) -> float:
    """Least-squares throughput gained per extra worker across `cells` (one per worker count)."""
    return _slope([(float(c.workers or 0), c.throughput_rps or 0.0) for c in cells])


def offered_below_capacity(cell: CellSummary, per_worker: float) -> bool:
    """The cell's ideal_rps is client-bound: the load offered was below what its workers could serve."""
    return cell.ideal_rps is not None and cell.ideal_rps < 0.99 * (cell.workers or 0) * per_worker


def worker_scaling(cells: Sequence[CellSummary], service: ServiceModel | None) -> list[Verdict]:
    """What each extra worker buys, and the first worker count where it stops paying."""
    topic = "worker scaling"
    queued = [c for c in measured(cells) if c.architecture == "queued"]
    if not queued:
        return [Verdict(topic, "No queued cells in this run: cannot say what extra workers buy.", False)]
    lines = []
    for (_, mode, load), group in sorted(series_groups(queued, by_config=False).items()):
        best = best_per_worker_count(group)
        name = f"queued/{mode}, {LOAD_NAMES.get(load, load)}"
        ideal = per_worker_ideal(group, service)
        if len(best) < 2 or ideal is None:
            lines.append(
                Verdict(
                    topic,
                    f"{name}: fewer than two worker counts measured: cannot say what an extra worker buys.",
                    False,
                )
            )
            continue
        lines.append(_scaling_line(topic, name, best, ideal))
    return lines


def scaling_stop(best: Sequence[CellSummary], ideal: float) -> int | None:
    """Index in `best` of the first worker count whose marginal gain is below SCALING_STOP of the ideal."""
    for index in range(1, len(best)):
        low, high = best[index - 1], best[index]
        gain = ((high.throughput_rps or 0) - (low.throughput_rps or 0)) / (
            (high.workers or 0) - (low.workers or 0)
        )
        if gain < SCALING_STOP * ideal:
            return index
    return None


def _scaling_line(topic: str, name: str, best: Sequence[CellSummary], ideal: float) -> Verdict:
    stop_index = scaling_stop(best, ideal)
    scaling = best[: stop_index if stop_index is not None else len(best)]
    gain = per_worker_gain(scaling)
    slope_text = (
        (
            f"each extra worker buys {gain:.2f} req/s (ideal {ideal:.2f} req/s per worker, "
            f"{100 * gain / ideal:.0f} %) from {scaling[0].workers} to {scaling[-1].workers} "
            "workers"
        )
        if len(scaling) >= 2
        else f"no gain past {workers_text(scaling[0].workers)}"
    )
    if stop_index is None:
        return Verdict(
            topic,
            f"{name}: {slope_text}; still scaling at {workers_text(best[-1].workers)}, "
            "the largest count tested.",
        )
    low, high = best[stop_index - 1], best[stop_index]
    text = (
        f"{name}: {slope_text}; it stops scaling after {workers_text(low.workers)} — "
        f"going to {high.workers} adds "
        f"less than {100 * SCALING_STOP:.0f} % of a worker's ideal throughput "
        f"({low.throughput_rps:.2f} → {high.throughput_rps:.2f} req/s)."
    )
    if offered_below_capacity(high, ideal):
        text += (
            f" But the load offered at {workers_text(high.workers)} was below their capacity "
            "(client-bound ideal): "
            "the stop may be the load's, not the workers'."
        )
    if high.generator_saturated:
        text += (
            f" The load generator was saturated at {workers_text(high.workers)}: "
            "the stop may be the generator's."
        )
    return Verdict(topic, text)


def saturation_cells(cells: Iterable[CellSummary]) -> list[CellSummary]:
    """Per worker count, the cell offered the most load (highest ideal_rps): where it should saturate."""
    best: dict[int, CellSummary] = {}
    for cell in cells:
        if cell.workers is None or cell.ideal_rps is None:
            continue
        current = best.get(cell.workers)
        if current is None or (cell.ideal_rps, cell.throughput_rps or 0) > (
            current.ideal_rps or 0,
            current.throughput_rps or 0,
        ):
            best[cell.workers] = cell
    return [best[w] for w in sorted(best)]


def join_counts(cells: Sequence[CellSummary]) -> str:
    """Worker counts in words: '1 worker', '2 workers', '1, 2 and 4 workers'."""
    if len(cells) == 1:
        return workers_text(cells[0].workers)
    counts = [str(c.workers) for c in cells]
    return ", ".join(counts[:-1]) + " and " + counts[-1] + " workers"


def _ratio_text(cell: CellSummary) -> str:
    return f"{100 * (cell.throughput_ratio or 0):.0f} % ({workers_text(cell.workers)})"


def ideal_closeness(cells: Sequence[CellSummary]) -> list[Verdict]:
    """How close queued throughput comes to ideal_rps at the highest load of each worker count."""
    topic = "queued vs ideal"
    queued = [c for c in measured(cells) if c.architecture == "queued" and c.throughput_ratio is not None]
    if not queued:
        text = "No queued cell with both throughput and ideal_rps: cannot compare with the ideal."
        return [Verdict(topic, text, False)]
    lines = []
    for (_, mode, load), group in sorted(series_groups(queued, by_config=False).items()):
        chosen = saturation_cells(group)
        if not chosen:
            continue
        low = [c for c in chosen if (c.throughput_ratio or 0) < 1 - IDEAL_TOLERANCE]
        high = [c for c in chosen if (c.throughput_ratio or 0) > 1 + IDEAL_TOLERANCE]
        ordered = sorted(chosen, key=lambda c: c.throughput_ratio or 0)
        span = _ratio_text(ordered[0]) + (f" to {_ratio_text(ordered[-1])}" if len(ordered) > 1 else "")
        text = (
            f"queued/{mode}, {LOAD_NAMES.get(load, load)}, at the highest load of each worker count: "
            f"throughput is {span} of ideal_rps; "
        )
        if not low:
            text += f"at least {100 * (1 - IDEAL_TOLERANCE):.0f} % of ideal at every worker count."
        else:
            text += f"below {100 * (1 - IDEAL_TOLERANCE):.0f} % of ideal at {join_counts(low)}."
        if high:
            text += (
                f" Above {100 * (1 + IDEAL_TOLERANCE):.0f} % at {join_counts(high)} — impossible as "
                "a sustained rate: likely a measurement artifact (a backlog answered after the window, or a "
                "service time shorter than configured)."
            )
        lines.append(Verdict(topic, text))
    return lines


def generator_limits(cells: Sequence[CellSummary]) -> Verdict:
    topic = "load generator"
    saturated = [c for c in cells if c.generator_saturated]
    if saturated:
        names = ", ".join(c.cell_id for c in saturated)
        return Verdict(
            topic,
            f"{len(saturated)} cell(s) were generator-limited (generator CPU above 80 % of a "
            f"core): {names}. Their latency and throughput understate the system.",
        )
    known = [c.generator_cpu_pct for c in cells if c.generator_cpu_pct is not None]
    if not known:
        return Verdict(
            topic,
            "Generator CPU was not recorded: cannot rule out that the load generator was the limit.",
            False,
        )
    return Verdict(
        topic, f"No cell was generator-limited (highest generator CPU {max(known):.0f} % of a core)."
    )


def cell_anomalies(cells: Sequence[CellSummary]) -> list[Verdict]:
    lines = []
    for cell in cells:
        if cell.requests == 0:
            lines.append(
                Verdict("cells", f"Cell {cell.cell_id} recorded no requests: left out of comparisons.")
            )
        elif cell.timeouts == cell.requests:
            lines.append(Verdict("cells", f"Cell {cell.cell_id}: every request timed out."))
    return lines


def compute_verdict(run: RunData) -> list[Verdict]:
    cells, deadline = run.cells, run.deadline_s
    if not cells:
        return [Verdict("run", "summary.csv has no cells: nothing to conclude.", False)]
    return [
        *baseline_timeouts(cells, deadline),
        *p99_ratio(cells, deadline),
        *outcome_comparison(cells),
        *worker_scaling(cells, run.service_model()),
        *ideal_closeness(cells),
        *queued_timeouts(cells),
        generator_limits(cells),
        *cell_anomalies(cells),
    ]
