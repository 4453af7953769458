"""Plain-language verdict lines, computed from summary.csv alone.

Each line is either a finding the data supports or an explicit "cannot say" with the reason; no line is
printed that the run cannot back. Architectures are compared by ratios within the run (DESIGN.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData

TIMEOUT_ONSET = 0.01  # a cell "times out" when more than 1 % of its requests passed the deadline
SCALING_STOP = 0.10  # a worker "stops paying" when it adds less than 10 % of one worker's ideal throughput
IDEAL_TOLERANCE = 0.10  # the acceptance bound: queued throughput within 10 % of ideal_rps
CAPACITY_TOLERANCE = 0.10  # capacities this close count as "the same size" in a queued vs sync comparison
THROUGHPUT_DIFFERENCE = 0.10  # ok throughputs further apart than this are worth a queued vs sync line
LOAD_NAMES = {"closed": "closed loop", "open": "open loop"}


@dataclass(frozen=True)
class Verdict:
    topic: str
    text: str
    supported: bool = True  # False: the comparison is impossible with this run; `text` says why


def format_ms(ms: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def format_load(cell: CellSummary) -> str:
    value = cell.load_value
    if value is None:
        return "unknown load"
    return f"{value:g} users" if cell.load == "closed" else f"{value:g} req/s"


def series_name(cell: CellSummary) -> str:
    return f"{cell.architecture}/{cell.mode}"


def measured(cells: Iterable[CellSummary]) -> list[CellSummary]:
    """Cells with at least one request and a known load."""
    return [c for c in cells if c.requests > 0 and c.load_value is not None]


def _groups(cells: Iterable[CellSummary], *, by_config: bool) -> dict[tuple[str, ...], list[CellSummary]]:
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
    for (_, mode, load, config), group in sorted(_groups(own, by_config=True).items()):
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
        f"{c.mode} {c.workers} workers at {format_load(c)} ({100 * (c.timeout_rate or 0):.1f} %)"
        for c in timing_out
    )
    return [Verdict(topic, f"Queued cells with more than 1 % timeouts: {names}.")]


def _most_workers(cells: Iterable[CellSummary]) -> dict[str, CellSummary]:
    """Per queued mode, the cell with the most workers."""
    best: dict[str, CellSummary] = {}
    for cell in cells:
        if cell.mode not in best or (cell.workers or 0) > (best[cell.mode].workers or 0):
            best[cell.mode] = cell
    return best


def p99_ratio(cells: Sequence[CellSummary], deadline_s: float | None) -> list[Verdict]:
    """Queued vs sync p99 at the highest load both were tested at, per load mode."""
    topic = "queued vs sync p99"
    usable = [c for c in measured(cells) if c.p99_ms is not None]
    architectures = {c.architecture for c in usable}
    if not {"queued", "sync"} <= architectures:
        missing = " and ".join(sorted({"queued", "sync"} - architectures))
        return [
            Verdict(topic, f"No measured {missing} cells in this run: cannot compare p99 latency.", False)
        ]
    lines = []
    for load in sorted({c.load for c in usable}):
        queued = [c for c in usable if c.load == load and c.architecture == "queued"]
        sync = [c for c in usable if c.load == load and c.architecture == "sync"]
        common = {c.load_value for c in queued} & {c.load_value for c in sync}
        where = LOAD_NAMES.get(load, load)
        if not queued or not sync:
            missing = "queued" if not queued else "sync"
            text = f"{where.capitalize()}: no {missing} cells in this load mode: cannot compare p99 latency."
            lines.append(Verdict(topic, text, False))
            continue
        if not common:
            lines.append(
                Verdict(
                    topic,
                    f"{where.capitalize()}: no load level was run on both architectures: "
                    "cannot compare p99 latency.",
                    False,
                )
            )
            continue
        level = max(v for v in common if v is not None)
        best_queued = _most_workers(c for c in queued if c.load_value == level)
        for sync_cell in sorted((c for c in sync if c.load_value == level), key=lambda c: c.mode):
            for queued_cell in best_queued.values():
                lines.append(_ratio_line(topic, queued_cell, sync_cell, where, deadline_s))
    return lines


def server_capacity(cell: CellSummary) -> float | None:
    """Requests per second the cell's server side can serve at most (W/S or concurrency/S)."""
    service_ms = cell.number("service_time_ms")
    servers = cell.workers if cell.architecture == "queued" else cell.number("concurrency")
    if not service_ms or not servers:
        return None
    return servers / (service_ms / 1000)


def _ratio_line(
    topic: str, queued: CellSummary, sync: CellSummary, where: str, deadline_s: float | None
) -> Verdict:
    assert queued.p99_ms is not None and sync.p99_ms is not None
    ratio = queued.p99_ms / sync.p99_ms
    relation = "lower" if ratio < 1 else "higher" if ratio > 1 else "equal"
    sync_name = f"sync/{sync.mode}" + (f" ({sync.config_label})" if sync.config_label else "")
    text = (
        f"At {format_load(sync)} ({where}), queued/{queued.mode} with {queued.workers} workers has a p99 "
        f"{ratio:.2f}× that of {sync_name} ({relation}: {format_ms(queued.p99_ms)} vs "
        f"{format_ms(sync.p99_ms)})."
    )
    if _same_capacity(queued, sync) is False:
        text += _capacity_differs_note(queued, sync)
    capped = [
        c for c in (queued, sync) if deadline_s and c.p99_ms is not None and c.p99_ms >= deadline_s * 1000
    ]
    if capped:
        names = " and ".join(series_name(c) for c in capped)
        text += f" The p99 of {names} sits at the deadline: the real tail is longer than shown."
    return Verdict(topic, text)


def _same_capacity(queued: CellSummary, sync: CellSummary) -> bool | None:
    """Whether both server sides can serve the same rate (within 10 %); None when a capacity is unknown."""
    gap = _capacity_gap(queued, sync)
    return None if gap is None else gap <= CAPACITY_TOLERANCE


def _capacity_gap(queued: CellSummary, sync: CellSummary) -> float | None:
    queued_capacity, sync_capacity = server_capacity(queued), server_capacity(sync)
    if queued_capacity is None or sync_capacity is None:
        return None
    low, high = sorted((queued_capacity, sync_capacity))
    return high / low - 1 if low > 0 else None


def _capacity_differs_note(queued: CellSummary, sync: CellSummary) -> str:
    return (
        f" Their capacities differ ({server_capacity(queued) or 0:.1f} vs {server_capacity(sync) or 0:.1f} "
        "req/s), so this compares these configurations, not the architectures alone."
    )


def outcome_comparison(cells: Sequence[CellSummary]) -> list[Verdict]:
    """Queued vs sync timeout rate and ok throughput at each load both ran at, per load mode.

    One line per load level at most, and only where the two differ (timeouts above 1 % on either side, or
    throughput more than 10 % apart): p99 alone hides the difference once both tails sit at the deadline.
    """
    topic = "queued vs sync outcomes"
    usable = [c for c in measured(cells) if c.throughput_rps is not None]
    architectures = {c.architecture for c in usable}
    if not {"queued", "sync"} <= architectures:
        missing = " and ".join(sorted({"queued", "sync"} - architectures))
        text = f"No measured {missing} cells in this run: cannot compare timeouts and throughput."
        return [Verdict(topic, text, False)]
    lines = []
    for load in sorted({c.load for c in usable}):
        queued = [c for c in usable if c.load == load and c.architecture == "queued"]
        sync = [c for c in usable if c.load == load and c.architecture == "sync"]
        where = LOAD_NAMES.get(load, load)
        levels = {c.load_value for c in queued} & {c.load_value for c in sync}
        common = sorted(v for v in levels if v is not None)
        if not common:
            text = (
                f"{where.capitalize()}: no load level was run on both architectures: "
                "cannot compare timeouts and throughput."
            )
            lines.append(Verdict(topic, text, False))
            continue
        for level in common:
            pairs = [(q, s) for q in queued if q.load_value == level for s in sync if s.load_value == level]
            chosen_queued, chosen_sync = min(pairs, key=_pair_preference)
            if _outcomes_differ(chosen_queued, chosen_sync):
                lines.append(Verdict(topic, _outcome_text(chosen_queued, chosen_sync, where)))
    return lines


def _pair_preference(pair: tuple[CellSummary, CellSummary]) -> tuple[bool, float, int, str, str, str]:
    """Closest capacities first (equal size compares the architectures), then the most workers."""
    queued, sync = pair
    gap = _capacity_gap(queued, sync)
    return (gap is None, gap or 0.0, -(queued.workers or 0), queued.mode, sync.mode, sync.config_label)


def _spread(a: float, b: float) -> float:
    """How far apart two non-negative rates are, as a fraction of the smaller one."""
    low, high = sorted((a, b))
    if high <= 0:
        return 0.0
    return high / low - 1 if low > 0 else float("inf")


def _served(cell: CellSummary) -> float:
    """Ok throughput per offered request/s (open-loop arrivals are random: offered rates differ a little)."""
    offered = cell.number("offered_rps")
    return (cell.throughput_rps or 0) / offered if offered else cell.throughput_rps or 0


def _outcomes_differ(queued: CellSummary, sync: CellSummary) -> bool:
    if max(queued.timeout_rate or 0, sync.timeout_rate or 0) > TIMEOUT_ONSET:
        return True
    if _spread(queued.throughput_rps or 0, sync.throughput_rps or 0) <= THROUGHPUT_DIFFERENCE:
        return False
    # In open loop a gap that only mirrors a gap in offered load (both kept up) is not the systems' doing.
    return queued.load != "open" or _spread(_served(queued), _served(sync)) > THROUGHPUT_DIFFERENCE


def _outcome_text(queued: CellSummary, sync: CellSummary, where: str) -> str:
    q_rps, s_rps = queued.throughput_rps or 0, sync.throughput_rps or 0
    sync_name = f"sync/{sync.mode}" + (f" ({sync.config_label})" if sync.config_label else "")
    text = (
        f"At {format_load(sync)} ({where}), queued/{queued.mode} with {queued.workers} workers timed out "
        f"{100 * (queued.timeout_rate or 0):.1f} % of requests and completed {q_rps:.1f} req/s; {sync_name} "
        f"timed out {100 * (sync.timeout_rate or 0):.1f} % and completed {s_rps:.1f} req/s"
    )
    if _spread(q_rps, s_rps) <= THROUGHPUT_DIFFERENCE:
        text += ": about the same throughput."
    elif min(q_rps, s_rps) <= 0:
        text += f": only {'the queued system' if q_rps > 0 else 'the baseline'} completed any request."
    elif q_rps > s_rps:
        text += f": the queued system completed {q_rps / s_rps:.1f}× the baseline's throughput."
    else:
        text += f": the baseline completed {s_rps / q_rps:.1f}× the queued system's throughput."
    same = _same_capacity(queued, sync)
    if same:
        text += (
            f" Both can serve about {server_capacity(queued) or 0:.1f} req/s at most, so the difference "
            "is the architecture's."
        )
    elif same is False:
        text += _capacity_differs_note(queued, sync)
    return text


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


def worker_scaling(cells: Sequence[CellSummary], service: ServiceModel | None) -> list[Verdict]:
    """What each extra worker buys, and the first worker count where it stops paying."""
    topic = "worker scaling"
    queued = [c for c in measured(cells) if c.architecture == "queued"]
    if not queued:
        return [Verdict(topic, "No queued cells in this run: cannot say what extra workers buy.", False)]
    lines = []
    for (_, mode, load), group in sorted(_groups(queued, by_config=False).items()):
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


def _scaling_line(topic: str, name: str, best: Sequence[CellSummary], ideal: float) -> Verdict:
    stop_index = None
    for index in range(1, len(best)):
        low, high = best[index - 1], best[index]
        gain = ((high.throughput_rps or 0) - (low.throughput_rps or 0)) / (
            (high.workers or 0) - (low.workers or 0)
        )
        if gain < SCALING_STOP * ideal:
            stop_index = index
            break
    scaling = best[: stop_index if stop_index is not None else len(best)]
    points = [(float(c.workers or 0), c.throughput_rps or 0.0) for c in scaling]
    slope_text = (
        (
            f"each extra worker buys {_slope(points):.2f} req/s (ideal {ideal:.2f} req/s per worker, "
            f"{100 * _slope(points) / ideal:.0f} %) from {scaling[0].workers} to {scaling[-1].workers} "
            "workers"
        )
        if len(points) >= 2
        else f"no gain past {scaling[0].workers} worker(s)"
    )
    if stop_index is None:
        return Verdict(
            topic,
            f"{name}: {slope_text}; still scaling at {best[-1].workers} workers, the largest count tested.",
        )
    low, high = best[stop_index - 1], best[stop_index]
    text = (
        f"{name}: {slope_text}; it stops scaling after {low.workers} workers — going to {high.workers} adds "
        f"less than {100 * SCALING_STOP:.0f} % of a worker's ideal throughput "
        f"({low.throughput_rps:.2f} → {high.throughput_rps:.2f} req/s)."
    )
    if high.ideal_rps is not None and high.ideal_rps < 0.99 * (high.workers or 0) * ideal:
        text += (
            f" But the load offered at {high.workers} workers was below their capacity (client-bound ideal): "
            "the stop may be the load's, not the workers'."
        )
    if high.generator_saturated:
        text += (
            f" The load generator was saturated at {high.workers} workers: the stop may be the generator's."
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
    counts = [str(c.workers) for c in cells]
    return counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]


def _ratio_text(cell: CellSummary) -> str:
    return f"{100 * (cell.throughput_ratio or 0):.0f} % ({cell.workers} workers)"


def ideal_closeness(cells: Sequence[CellSummary]) -> list[Verdict]:
    """How close queued throughput comes to ideal_rps at the highest load of each worker count."""
    topic = "queued vs ideal"
    queued = [c for c in measured(cells) if c.architecture == "queued" and c.throughput_ratio is not None]
    if not queued:
        text = "No queued cell with both throughput and ideal_rps: cannot compare with the ideal."
        return [Verdict(topic, text, False)]
    lines = []
    for (_, mode, load), group in sorted(_groups(queued, by_config=False).items()):
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
            text += f"below {100 * (1 - IDEAL_TOLERANCE):.0f} % of ideal at {join_counts(low)} workers."
        if high:
            text += (
                f" Above {100 * (1 + IDEAL_TOLERANCE):.0f} % at {join_counts(high)} workers — impossible as "
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
