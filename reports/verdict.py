"""Plain-language verdict lines, computed from the run folder alone.

Each line is either a finding the data supports or an explicit "cannot say" / "cannot tell" with the reason;
no line is printed that the run cannot back. Claims go through reports/significance.py: "at least 90 % of
ideal" only when the whole interval of the share of ideal is at or above 90 %, "still scaling at N workers"
only when the interval of what the last worker added lies above 0 and its estimate above 10 % of a worker's
ideal. Cells the testbed limited (a single-process server ≥ 85 % of a core, or the machine ≥ 90 % of its
cores) stay out of the per-worker slope. The queued vs sync lines are in reports/comparison.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reports.comparison import outcome_comparison, p99_ratio
from reports.concurrency import jobs_per_worker, series_mode
from reports.intervals import Interval, slope_interval, welch_difference
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData, workers_text
from reports.significance import Decision, Outcome, decide
from reports.verdict_text import (
    LOAD_NAMES,
    TIMEOUT_ONSET,
    Verdict,
    format_load,
    measured,
    more_trials_text,
    percent_text,
    rate_text,
)

SCALING_STOP = 0.10  # a worker "stops paying" when it adds less than 10 % of one worker's ideal throughput
IDEAL_TOLERANCE = 0.10  # the acceptance bound: queued throughput at least 90 % of ideal_rps


def series_groups(
    cells: Iterable[CellSummary], *, by_config: bool
) -> dict[tuple[str, ...], list[CellSummary]]:
    """Cells keyed by (architecture, mode, load), plus the configuration label when `by_config`."""
    groups: dict[tuple[str, ...], list[CellSummary]] = defaultdict(list)
    for cell in cells:
        key = (cell.architecture, series_mode(cell), cell.load) + ((cell.config_label,) if by_config else ())
        groups[key].append(cell)
    return dict(groups)


def timing_out(cell: CellSummary) -> Outcome:
    """ABOVE: the timeout rate's Wilson interval lies wholly above 1 %; BELOW: wholly below; else
    UNDECIDED."""
    interval = cell.stats.timeout_rate
    if interval is None:
        return Outcome.UNDECIDED
    return decide(interval, TIMEOUT_ONSET, 0.0).outcome


def baseline_timeouts(cells: Sequence[CellSummary], deadline_s: float | None) -> list[Verdict]:
    """Per baseline mode, load mode and configuration: the first load whose timeouts are clearly above 1 %."""
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
        onset = next((c for c in group if timing_out(c) is Outcome.ABOVE), None)
        unclear = [
            c for c in group if timing_out(c) is Outcome.UNDECIDED and (onset is None or c is not onset)
        ]
        unclear_text = (
            f" Cannot tell whether timeouts exceed 1 % at {', '.join(format_load(c) for c in unclear)} "
            f"({'; '.join(percent_text(c.stats.timeout_rate) for c in unclear)})."
            if unclear
            else ""
        )
        if onset is None:
            highest = max(group, key=lambda c: c.timeout_rate or 0)
            lines.append(
                Verdict(
                    topic,
                    f"{name}: no load tested had timeouts clearly above 1 % (up to {format_load(group[-1])}; "
                    f"highest {percent_text(highest.stats.timeout_rate)} at {format_load(highest)})."
                    + unclear_text,
                )
            )
            continue
        before = [c for c in group if (c.load_value or 0) < (onset.load_value or 0)]
        previous = (
            f"; at {format_load(before[-1])}: {percent_text(before[-1].stats.timeout_rate)}"
            if before
            else " (already at the lowest load tested)"
        )
        lines.append(
            Verdict(
                topic,
                f"{name}: starts timing out at {format_load(onset)} — "
                f"{percent_text(onset.stats.timeout_rate)} of requests passed {deadline}"
                f"{previous}." + unclear_text,
            )
        )
    return lines


def queued_timeouts(cells: Sequence[CellSummary]) -> list[Verdict]:
    topic = "queued timeouts"
    own = measured(c for c in cells if c.architecture == "queued")
    if not own:
        return []  # worker_scaling already says there are no queued cells
    clearly = [c for c in own if timing_out(c) is Outcome.ABOVE]
    if not clearly:
        return [Verdict(topic, f"No queued cell had timeouts clearly above 1 % ({len(own)} cells).")]
    names = ", ".join(
        f"{c.mode} {workers_text(c.workers)} at {format_load(c)} ({percent_text(c.stats.timeout_rate)})"
        for c in clearly
    )
    return [Verdict(topic, f"Queued cells with timeouts clearly above 1 %: {names}.")]


def per_worker_ideal(cells: Sequence[CellSummary], service: ServiceModel | None) -> float | None:
    """Throughput one worker could give at most (1/S; SAQ: C/S, `cells` of one series)."""
    if service is not None:
        return service.rate * max((jobs_per_worker(c) or 1 for c in cells), default=1)
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


def per_worker_gain(cells: Sequence[CellSummary]) -> Interval | None:
    """Least-squares throughput gained per extra worker over every trial of `cells` (one cell per worker
    count), with its t interval; None below two worker counts."""
    points = [(float(c.workers or 0), t.throughput_rps) for c in cells for t in c.runs]
    kept = [(x, y) for x, y in points if y is not None]
    return slope_interval([x for x, _ in kept], [y for _, y in kept])


def offered_below_capacity(cell: CellSummary, per_worker: float) -> bool:
    """The cell's ideal_rps is client-bound: the load offered was below what its workers could serve."""
    return cell.ideal_rps is not None and cell.ideal_rps < 0.99 * (cell.workers or 0) * per_worker


@dataclass(frozen=True)
class Step:
    """From one worker count to the next: the throughput each added worker bought, and the verdict."""

    low: CellSummary
    high: CellSummary
    decision: Decision  # gain per added worker vs 0, margin SCALING_STOP of a worker's ideal

    @property
    def scaling(self) -> bool:
        return self.decision.outcome is Outcome.ABOVE

    @property
    def stopped(self) -> bool:
        return self.decision.outcome in (Outcome.ALIKE, Outcome.BELOW)


def scaling_steps(best: Sequence[CellSummary], ideal: float) -> list[Step]:
    steps = []
    for low, high in zip(best, best[1:], strict=False):
        left = [t.throughput_rps for t in high.runs if t.throughput_rps is not None]
        right = [t.throughput_rps for t in low.runs if t.throughput_rps is not None]
        if not left or not right:
            continue
        added = (high.workers or 0) - (low.workers or 0)
        gain = welch_difference(left, right).scaled(1 / added)
        steps.append(Step(low, high, decide(gain, 0.0, SCALING_STOP * ideal)))
    return steps


def scaling_stop(best: Sequence[CellSummary], ideal: float) -> int | None:
    """Index in `best` of the first worker count past which an extra worker clearly stopped paying (its gain
    lies within 10 % of a worker's ideal, or below); None while every step still pays or cannot tell."""
    for index, step in enumerate(scaling_steps(best, ideal), start=1):
        if step.stopped:
            return index
    return None


def split_testbed_limited(cells: Sequence[CellSummary]) -> tuple[list[CellSummary], list[CellSummary]]:
    """(cells the testbed did not limit, cells it did): the latter stay out of slopes and sizing."""
    return [c for c in cells if not c.testbed_limit], [c for c in cells if c.testbed_limit]


def worker_scaling(cells: Sequence[CellSummary], service: ServiceModel | None) -> list[Verdict]:
    """What each extra worker buys, and the first worker count where it stops paying."""
    topic = "worker scaling"
    queued = [c for c in measured(cells) if c.architecture == "queued"]
    if not queued:
        return [Verdict(topic, "No queued cells in this run: cannot say what extra workers buy.", False)]
    lines = []
    for (_, mode, load), group in sorted(series_groups(queued, by_config=False).items()):
        name = f"queued/{mode}, {LOAD_NAMES.get(load, load)}"
        best, limited = split_testbed_limited(best_per_worker_count(group))
        ideal = per_worker_ideal(group, service)
        if len(best) < 2 or ideal is None:
            why = (
                f" (the testbed limited {join_counts(limited)}: {limited[0].testbed_limit})"
                if limited
                else ""
            )
            lines.append(
                Verdict(
                    topic,
                    f"{name}: fewer than two worker counts measured without a testbed limit{why}: cannot say "
                    "what an extra worker buys.",
                    False,
                )
            )
            continue
        lines.append(_scaling_line(topic, name, best, ideal, limited))
    return lines


def _scaling_line(
    topic: str, name: str, best: Sequence[CellSummary], ideal: float, limited: Sequence[CellSummary]
) -> Verdict:
    stop_index = scaling_stop(best, ideal)
    scaling = best[: stop_index if stop_index is not None else len(best)]
    gain = per_worker_gain(scaling)
    slope_text = (
        f"each extra worker buys {rate_text(gain)} (ideal {ideal:.2f} req/s per worker, "
        f"{100 * gain.estimate / ideal:.0f} %) from {scaling[0].workers} to {scaling[-1].workers} workers"
        if gain is not None and len(scaling) >= 2
        else f"no gain past {workers_text(scaling[0].workers)}"
    )
    left_out = (
        f" Left out as testbed-limited: {join_counts(limited)} ({limited[0].testbed_limit})."
        if limited
        else ""
    )
    if stop_index is None:
        last = scaling_steps(best, ideal)[-1]
        if last.scaling:
            tail = f"still scaling at {workers_text(best[-1].workers)}, the largest count tested"
        else:
            tail = (
                f"cannot tell whether it still scales at {workers_text(best[-1].workers)} (the last step "
                f"added {rate_text(last.decision.interval)} per worker; {more_trials_text(last.decision)})"
            )
        return Verdict(topic, f"{name}: {slope_text}; {tail}.{left_out}")
    low, high = best[stop_index - 1], best[stop_index]
    text = (
        f"{name}: {slope_text}; it stops scaling after {workers_text(low.workers)} — "
        f"going to {high.workers} adds less than {100 * SCALING_STOP:.0f} % of a worker's ideal throughput "
        f"({rate_text(low.stats.throughput)} → {rate_text(high.stats.throughput)})."
    )
    if offered_below_capacity(high, ideal):
        text += (
            f" But the load offered at {workers_text(high.workers)} was below their capacity "
            "(client-bound ideal): the stop may be the load's, not the workers'."
        )
    if high.generator_saturated:
        text += (
            f" The load generator was saturated at {workers_text(high.workers)}: "
            "the stop may be the generator's."
        )
    return Verdict(topic, text + left_out)


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


def share_of_ideal(cell: CellSummary) -> Decision | None:
    """The share of ideal against the 90 % bound (no margin: the whole interval on one side)."""
    ratio = cell.stats.ratio
    return None if ratio is None else decide(ratio, 1 - IDEAL_TOLERANCE, 0.0)


ABOVE_IDEAL_MARGIN = 0.01  # an estimate within 1 % of ideal is rounding, not an error worth a flag


def above_ideal(cell: CellSummary) -> bool:
    """The whole interval of the share of ideal lies above 100 % (and its estimate past 101 %): not a
    sustainable rate."""
    ratio = cell.stats.ratio
    return ratio is not None and decide(ratio, 1.0, ABOVE_IDEAL_MARGIN).outcome is Outcome.ABOVE


def above_ideal_cause(cell: CellSummary) -> str:
    """The likeliest reason a cell measured more than its ideal."""
    service, drawn = cell.number("service_time_ms"), cell.number("upstream_draw_ms")
    if service and drawn and drawn < 0.98 * service:
        return (
            f"the upstream drew {drawn:.0f} ms per request on average against the configured S = "
            f"{service:.0f} ms (a luckier draw than the model's mean: CRN keeps it the same for every cell "
            "at this load, so comparisons stand)"
        )
    offered = cell.number("offered_rps")
    capacity = (cell.workers or 0) / (service / 1000) if service and cell.workers else None
    if cell.load == "open" and offered and capacity and offered > capacity:
        return "answers to a backlog built during warm-up counted in the window"
    completions = (cell.throughput_rps or 0) * (cell.number("duration_s") or 0)
    if completions < 100:
        return (
            f"the window's edges: ≈ {completions:.0f} completions per trial, where one more or less moves "
            "the rate by several %"
        )
    return "a service time shorter than configured (an external upstream?) or a clock error"


def _ratio_text(cell: CellSummary) -> str:
    return f"{percent_text(cell.stats.ratio, 0, share=False)} ({workers_text(cell.workers)})"


def ideal_closeness(cells: Sequence[CellSummary]) -> list[Verdict]:
    """How close queued throughput comes to ideal_rps at the highest load of each worker count."""
    topic = "queued vs ideal"
    queued = [c for c in measured(cells) if c.architecture == "queued" and c.throughput_ratio is not None]
    if not queued:
        text = "No queued cell with both throughput and ideal_rps: cannot compare with the ideal."
        return [Verdict(topic, text, False)]
    lines = []
    bound = f"{100 * (1 - IDEAL_TOLERANCE):.0f} %"
    for (_, mode, load), group in sorted(series_groups(queued, by_config=False).items()):
        chosen = saturation_cells(group)
        if not chosen:
            continue
        verdicts = [(c, share_of_ideal(c)) for c in chosen]
        at_least = [c for c, d in verdicts if d is not None and d.outcome is Outcome.ABOVE]
        below = [c for c, d in verdicts if d is not None and d.outcome is Outcome.BELOW]
        unclear = [(c, d) for c, d in verdicts if d is None or not d.decided]
        text = (
            f"queued/{mode}, {LOAD_NAMES.get(load, load)}, at the highest load of each worker count: "
            f"throughput is {'; '.join(_ratio_text(c) for c in chosen)} of ideal_rps"
        )
        parts = []
        if at_least:
            parts.append(f"at least {bound} of ideal at {join_counts(at_least)}")
        if below:
            parts.append(f"below {bound} at {join_counts(below)}")
        if unclear:
            hardest = max((d for _, d in unclear if d is not None), key=lambda d: d.needed or 0, default=None)
            more = f"; {more_trials_text(hardest)}" if hardest is not None else ""
            parts.append(
                f"cannot tell whether {bound} is reached at {join_counts([c for c, _ in unclear])}{more}"
            )
        text += ": " + ", ".join(parts) + "."
        for cell in chosen:
            if above_ideal(cell):
                text += (
                    f" MEASUREMENT ERROR at {workers_text(cell.workers)}: the whole interval lies above "
                    "100 % of ideal, impossible as a sustained rate; likely cause: "
                    f"{above_ideal_cause(cell)}."
                )
        limited = [c for c in chosen if c.testbed_limit]
        if limited:
            text += (
                f" Testbed-limited: {join_counts(limited)} ({limited[0].testbed_limit}): a low share there "
                "is the machine's."
            )
        overhead = chosen[0].number("overhead_ms")
        service = chosen[0].number("service_time_ms")
        if overhead and service:
            text += (
                f" The job path's own time, {overhead:.0f} ms per request at zero upstream latency, caps a "
                f"healthy system near {100 * service / (service + overhead):.0f} % of ideal."
            )
        lines.append(Verdict(topic, text))
    return lines


def limited_by_testbed(cells: Sequence[CellSummary]) -> Verdict:
    """Which cells the machine, not the architecture, may have limited."""
    topic = "testbed"
    limited = [c for c in cells if c.testbed_limit]
    if limited:
        names = "; ".join(f"{c.cell_id} ({c.testbed_limit})" for c in limited)
        return Verdict(
            topic,
            f"{len(limited)} of {len(cells)} cell(s) were testbed-limited (a single-process server at ≥ 85 % "
            f"of a core, or the machine at ≥ 90 % of its cores): {names}. Their figures measure this machine "
            "as much as the architecture; they are left out of the per-worker slope and the sizing.",
        )
    known = [c for c in cells if c.number("cpu_machine_pct") is not None]
    if not known:
        return Verdict(
            topic, "Machine CPU was not recorded: cannot rule out that the testbed was the limit.", False
        )
    busiest = max(known, key=lambda c: c.number("cpu_machine_pct") or 0)
    return Verdict(
        topic,
        f"No cell was testbed-limited (busiest machine: {busiest.number('cpu_machine_pct') or 0:.0f} % in "
        f"{busiest.cell_id}).",
    )


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


UNKNOWN_UPSTREAM = (
    "The upstream's latency is unknown (`ragload bench --target` without mock=URL): the profile's latency "
    "model never reached it, so this report has no ideal throughput, no share of ideal and no queueing "
    "prediction. Give the mock's URL in --target to set its latency, or read the figures as they are."
)


def compute_verdict(run: RunData) -> list[Verdict]:
    cells, deadline = run.cells, run.deadline_s
    if not cells:
        return [Verdict("run", "summary.csv has no cells: nothing to conclude.", False)]
    unknown = [] if run.upstream_known else [Verdict("ideal", UNKNOWN_UPSTREAM, False)]
    return [
        *unknown,
        *baseline_timeouts(cells, deadline),
        *p99_ratio(cells, deadline),
        *outcome_comparison(cells),
        *worker_scaling(cells, run.service_model()),
        *ideal_closeness(cells),
        *queued_timeouts(cells),
        generator_limits(cells),
        limited_by_testbed(cells),
        *cell_anomalies(cells),
    ]
