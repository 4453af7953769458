"""The report's answer, put first: inline or queued, and how many workers for a given rate.

Computed from the run folder alone, like the verdict it summarises: the architecture line gives, per load
compared at equal server capacity, the verdict of the paired trial differences ("did better" only where the
interval excludes zero and the difference exceeds its margin, "did alike" only where the whole interval lies
inside the margin, "cannot tell" otherwise, with the trials that would decide); the sizing line turns the
per-worker slope and its interval into worker counts with ranges. Each line says what it rests on, which
figures the machine limited, and where it stops being a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from reports.comparison import (
    PairVerdict,
    baseline_name,
    compare,
    difference,
    level_pairs,
    same_capacity,
    server_capacity,
)
from reports.concurrency import engine
from reports.corners import corners_answer
from reports.intervals import Interval
from reports.knee import knee_lines
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData, workers_text
from reports.significance import Outcome
from reports.upstream import UpstreamModel, upstream_models
from reports.verdict import (
    best_per_worker_count,
    offered_below_capacity,
    per_worker_gain,
    per_worker_ideal,
    scaling_stop,
    series_groups,
    split_testbed_limited,
    timing_out,
)
from reports.verdict_text import (
    LOAD_NAMES,
    TIMEOUT_ONSET,
    Verdict,
    format_load,
    format_ms,
    measured,
    ms_text,
    percent_text,
    rate_text,
)

BUSY_TARGET = 0.8  # size for workers at most 80 % busy: at 100 % the queue, and the wait, grow without bound
EXAMPLE_RATES = (10, 50, 100)  # req/s a reader might need to serve


def compute_answer(run: RunData) -> list[Verdict]:
    cells = measured(run.cells)
    service = run.service_model()
    knees = {name: model for name, model in upstream_models(run).items() if model.has_knee}
    without_knee = [c for c in cells if c.upstream not in knees]
    return [
        inline_or_queued(cells),
        *knee_lines(run, cells),
        *unbounded_inline(without_knee),
        workers_needed(cells, service, knees),
        *corners_answer(run),  # reports/corners.py: only in a run with SAQ cells
    ]


def _loads_text(cells: Sequence[CellSummary]) -> str:
    by_mode: dict[str, list[str]] = {}
    for cell in cells:
        by_mode.setdefault(LOAD_NAMES.get(cell.load, cell.load), []).append(format_load(cell))
    return "; ".join(f"{', '.join(loads)} ({mode})" for mode, loads in by_mode.items())


def _overloaded(cell: CellSummary) -> bool:
    """Offered more than its server side can serve (open loop: arrivals above W/S or concurrency/S)."""
    capacity, offered = server_capacity(cell), cell.number("offered_rps")
    return cell.load == "open" and capacity is not None and offered is not None and offered > capacity


def _trials_text(pairs: Sequence[PairVerdict]) -> str:
    counts = sorted({min(p.queued.stats.trials, p.sync.stats.trials) for p in pairs})
    shown = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}–{counts[-1]}"
    return f"{shown} paired trial{'s' if counts[-1] != 1 else ''} per cell"


def inline_or_queued(cells: Sequence[CellSummary]) -> Verdict:
    """At equal server capacity, at which loads each architecture did better, did alike, or cannot tell."""
    topic = "inline or queued"
    pairs = [compare(q, s) for q, s in level_pairs(cells) if same_capacity(q, s)]
    if not pairs:
        return Verdict(
            topic,
            "Inline or queued: no load was run on both architectures at equal server capacity, so this run "
            "cannot separate the architecture from the configuration (the lines below compare what was run).",
            False,
        )
    capacities = sorted(server_capacity(p.queued) or 0 for p in pairs)
    size = f"{capacities[0]:.1f}" + (f"–{capacities[-1]:.1f}" if capacities[-1] > 1.1 * capacities[0] else "")
    service = format_ms(pairs[0].queued.number("service_time_ms"))
    bound = (
        f"the upstream's capacity curve at as many calls as workers or threads ≈ {size} req/s, `"
        f"{pairs[0].queued.upstream}`"
        if pairs[0].queued.number("upstream_rps") is not None
        else f"workers / S = concurrency / S ≈ {size} req/s"
    )
    text = (
        f"Inline or queued, at equal server capacity ({bound}, "
        f"S = {service} per request upstream; {_trials_text(pairs)}, 95 % intervals): "
    )
    parts = [
        f"the {name} did better at {'; '.join(_pair_text(p) for p in pairs if p.winner == winner)}"
        for winner, name in (("queued", "queued system"), ("sync", "inline baseline"))
        if any(p.winner == winner for p in pairs)
    ]
    alike = [p for p in pairs if p.alike]
    if alike:
        parts.append(
            "they did alike (timeouts within ±1 point, throughput within ±10 %) at "
            + _loads_text([p.sync for p in alike])
        )
    mixed = [p for p in pairs if p.mixed]
    if mixed:
        parts.append(f"each did better on one measure at {'; '.join(_pair_text(p) for p in mixed)}")
    open_questions = [p for p in pairs if p.winner is None and not p.alike and not p.mixed]
    if open_questions:
        parts.append(
            "cannot tell from this run at "
            + "; ".join(f"{_pair_text(p)}: {p.more_trials()}" for p in open_questions)
        )
    text += "; ".join(parts) + "."
    text += _overload_caveat([p for p in pairs if p.winner == "queued"])
    text += _kept_up_gap([p for p in pairs if p.alike or p.winner is not None])
    text += _testbed_note(pairs)
    return Verdict(topic, text)


def _pair_text(pair: PairVerdict) -> str:
    queued, sync = pair.queued, pair.sync
    text = (
        f"{format_load(sync)} ({LOAD_NAMES.get(sync.load, sync.load)}: timed out "
        f"{percent_text(queued.stats.timeout_rate)} vs {percent_text(sync.stats.timeout_rate)}, completed "
        f"{rate_text(queued.stats.throughput)} vs {rate_text(sync.stats.throughput)}, queued vs inline"
    )
    return text + _slo_text(pair) + ")"


def _slo_text(pair: PairVerdict) -> str:
    """Goodput under the SLO, where it ranks the two sides differently from their timeouts."""
    by_name = {m.name: m for m in pair.measures}
    slo, timeouts = by_name.get("SLO attainment"), by_name.get("timeouts")
    if slo is None or (timeouts is not None and slo.better == timeouts.better):
        return ""
    queued, sync = pair.queued, pair.sync
    limit = format_ms(queued.number("slo_e2e_ms"))
    return (
        f"; within the SLO (e2e ≤ {limit}) {percent_text(queued.stats.slo_attainment)} vs "
        f"{percent_text(sync.stats.slo_attainment)}, goodput {rate_text(queued.stats.goodput)} vs "
        f"{rate_text(sync.stats.goodput)}: "
        + {"queued": "the queued system", "sync": "the inline baseline", None: "neither side"}[slo.better]
        + " clearly ahead there"
    )


def _overload_caveat(queued_better: Sequence[PairVerdict]) -> str:
    """Where the queue's lead comes from holding an overload, say that the lead is bounded in time."""
    overloaded = [p for p in queued_better if _overloaded(p.sync)]
    if not overloaded:
        return ""
    queued, sync = overloaded[-1].queued, overloaded[-1].sync
    capacity = server_capacity(queued) or 0
    offered = queued.number("offered_rps") or 0
    window = queued.number("duration_s")
    neither = " neither kept up:" if timing_out(queued) is Outcome.ABOVE else ""
    return (
        f" At {format_load(sync)}{neither} {offered:.1f} req/s arrived for ≈ {capacity:.1f} req/s of "
        "capacity. "
        f"The queue's lead there lasts only while its backlog, growing by ≈ {offered - capacity:.1f} req/s, "
        f"is shorter than the deadline: the longer the overload lasts past this cell's"
        f"{f' {window:g} s' if window else ' window'}, the more the queued system times out too, until "
        "admission control (429) turns the excess away."
    )


def _kept_up_gap(decided: Sequence[PairVerdict]) -> str:
    """The latency the queue costs where neither side timed out (p50, paired across trials)."""
    kept_up = [
        p
        for p in decided
        if Outcome.ABOVE not in (timing_out(p.queued), timing_out(p.sync))
        and (p.queued.timeout_rate or 0) <= TIMEOUT_ONSET
        and (p.sync.timeout_rate or 0) <= TIMEOUT_ONSET
    ]
    gaps = [(p, difference(p.queued, p.sync, lambda t: t.p50_ms)) for p in kept_up]
    shown = [f"{ms_text(gap)} at {format_load(p.sync)}" for p, gap in gaps if gap is not None]
    if not shown:
        return ""
    return (
        f" Where both kept up, queued p50 minus inline p50 was {'; '.join(shown)} (negative: queued faster)."
    )


def _testbed_note(pairs: Sequence[PairVerdict]) -> str:
    limited = [
        f"{side} at {format_load(cell)} ({cell.testbed_limit})"
        for p in pairs
        for side, cell in (("queued", p.queued), ("inline", p.sync))
        if cell.testbed_limit
    ]
    if not limited:
        return ""
    return (
        f" The machine limited {', '.join(limited)}: those figures measure this testbed as much as the "
        "architecture."
    )


def unbounded_inline(cells: Sequence[CellSummary]) -> list[Verdict]:
    """A baseline mode with no server-side concurrency bound that clearly had no timeouts: no workers needed
    (unless the machine, not the upstream, bounded it)."""
    lines = []
    for mode in sorted({c.mode for c in cells if c.architecture == "sync"}):
        own = [c for c in cells if c.architecture == "sync" and c.mode == mode]
        if any(c.number("concurrency") for c in own):  # threads, or one request per process: bounded
            continue
        top = max(own, key=lambda c: c.throughput_rps or 0)
        figures = (
            f"up to {rate_text(top.stats.throughput)} completed at {format_load(top)}, "
            f"{percent_text(top.stats.ratio, 0, share=False)} of ideal"
        )
        limited = [c for c in own if c.testbed_limit]
        if limited:
            lines.append(
                Verdict(
                    "inline or queued",
                    f"{baseline_name(top)}, bounded in design only by the upstream: {figures}; but the "
                    f"machine limited it at {', '.join(format_load(c) for c in limited)} "
                    f"({limited[0].testbed_limit}), so this run cannot say that inline async needs no "
                    "workers: on this testbed it ran out of CPU before the upstream ran out of concurrency.",
                    False,
                )
            )
            continue
        outcomes = [timing_out(c) for c in own]
        if any(o is Outcome.ABOVE for o in outcomes):
            continue
        if any(o is Outcome.UNDECIDED for o in outcomes):
            lines.append(
                Verdict(
                    "inline or queued",
                    f"{baseline_name(top)}, bounded only by the upstream: {figures}; cannot tell from this "
                    f"run whether its timeouts stay below 1 % ({percent_text(top.stats.timeout_rate)}).",
                    False,
                )
            )
            continue
        lines.append(
            Verdict(
                "inline or queued",
                f"{baseline_name(top)}, bounded only by the upstream{_on(top)}, had timeouts clearly below "
                f"1 % at every load tested ({figures}, timed out {percent_text(top.stats.timeout_rate)}, p99 "
                f"{format_ms(top.p99_ms)}): when the pipeline only waits on an upstream that takes the "
                "concurrency (as this mock does), inline async needs no workers. A queue pays off when the "
                "upstream or the machine caps concurrency, or when bursts must be held rather than refused.",
            )
        )
    return lines


def _on(cell: CellSummary) -> str:
    return f" (`{cell.upstream}`)" if cell.upstream else ""


def _sizing_group(cells: Sequence[CellSummary]) -> list[CellSummary]:
    """The queued cells of one mode and load mode with the most worker counts (closed loop on a tie)."""
    # RQ only: a SAQ worker process holds C jobs at once, so its slope is no RQ worker's
    groups = series_groups((c for c in cells if engine(c) == "rq"), by_config=False)
    if not groups:
        return []
    # keys are (architecture, mode, load)
    key = max(
        groups, key=lambda k: (len({c.workers for c in groups[k]}), k[2] == "closed", k[1] == "longpoll")
    )
    return groups[key]


def workers_for(rate: float, gain: Interval) -> str:
    """`5 [4, 6]`: workers at most 80 % busy for `rate`, with the range the slope's interval allows."""
    count = math.ceil(rate / (BUSY_TARGET * gain.estimate))
    if gain.low is None or gain.high is None:
        return str(count)
    fewest = math.ceil(rate / (BUSY_TARGET * gain.high))
    most = f"{math.ceil(rate / (BUSY_TARGET * gain.low))}" if gain.low > 0 else "unbounded"
    return f"{count} [{fewest}, {most}]"


def workers_needed(
    cells: Sequence[CellSummary],
    service: ServiceModel | None,
    knees: Mapping[str, UpstreamModel] | None = None,
) -> Verdict:
    """Per-worker throughput measured across worker counts → workers for example rates at 80 % busy (on an
    upstream with a knee: up to the knee's rate only; no worker count serves more than the upstream)."""
    topic = "workers needed"
    group = _sizing_group(cells)
    best, limited = split_testbed_limited(best_per_worker_count(group))
    ideal = per_worker_ideal(group, service)
    left_out = (
        f" Left out because the machine limited them: {', '.join(workers_text(c.workers) for c in limited)} "
        f"({limited[0].testbed_limit})."
        if limited
        else ""
    )
    if len(best) < 2:
        return Verdict(
            topic,
            "How many workers: fewer than two queued worker counts measured without a testbed limit, so no "
            "per-worker throughput to size from." + left_out,
            False,
        )
    # Without a known upstream there is no ideal: the first worker count's own rate per worker stands in as
    # the yardstick of "an extra worker still pays".
    reference = ideal or (best[0].throughput_rps or 0) / (best[0].workers or 1)
    stop = scaling_stop(best, reference)
    scaling = best[: stop if stop is not None else len(best)]
    gain = per_worker_gain(scaling) if len(scaling) >= 2 else None
    if gain is None or gain.estimate <= 0:
        return Verdict(
            topic,
            f"How many workers: throughput did not grow past {scaling[0].workers} worker(s) on this machine, "
            "so adding workers here does not serve more." + left_out,
        )
    largest = scaling[-1].workers or 0
    sizes = []
    for rate in EXAMPLE_RATES:
        count = math.ceil(rate / (BUSY_TARGET * gain.estimate))
        sizes.append(
            f"{rate} req/s → {workers_for(rate, gain)}" + (" (extrapolated)" if count > largest else "")
        )
    trials = sum(c.stats.trials for c in scaling)
    of_ideal = (
        f"{percent_text(gain.scaled(1 / ideal), 0, share=False)} of 1/S, "
        f"S = {format_ms(1000 / ideal)} per request"
        if ideal
        else "no ideal to compare with: the upstream's latency is unknown"
    )
    text = (
        f"How many workers: each worker served {rate_text(gain)} ({of_ideal}), the slope over {trials} "
        "trials from "
        f"{scaling[0].workers} to {largest} workers ({best[0].mode}, "
        f"{LOAD_NAMES.get(best[0].load, best[0].load)}). "
        f"At most {100 * BUSY_TARGET:.0f} % busy, that is {'; '.join(sizes)} workers (ranges from the "
        "slope's interval). Counts scale with your upstream's time per request S' as S'/S."
    )
    if stop is not None:
        high, top = best[stop], scaling[-1].throughput_rps or 0
        if ideal and offered_below_capacity(high, ideal):
            text += f" {high.workers} workers were offered less than their capacity: sized from ≤ {largest}."
        else:
            text += (
                f" Past {largest} workers throughput stopped growing on this machine ({high.workers} workers "
                f"served {rate_text(high.stats.throughput)}): above ≈ {top:.0f} req/s the limit is not the "
                "worker count here."
            )
    return Verdict(topic, text + left_out + _knee_cap(scaling[-1], knees or {}))


def _knee_cap(cell: CellSummary, knees: Mapping[str, UpstreamModel]) -> str:
    """On an upstream with a knee, rates past the knee's are not reachable with more workers."""
    model = knees.get(cell.upstream)
    if model is None:
        return ""
    return (
        f" These workers ran against `{model.name}`, whose knee caps every design at ≈ "
        f"{model.knee_rps or 0:.1f} req/s (its capacity curve): counts for rates above that assume an "
        "upstream with more capacity; "
        f"against this one, workers past its knee (≈ {model.knee_concurrency}) only add calls in flight."
    )
