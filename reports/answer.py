"""The report's answer, put first: inline or queued, and how many workers for a given rate.

Computed from summary.csv alone, like the verdict it summarises: the architecture line counts the loads at
which one side did better at equal server capacity, the sizing line turns the measured per-worker throughput
into worker counts. Each line says what it rests on and where it stops being a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reports.comparison import (
    baseline_name,
    better_architecture,
    level_pairs,
    same_capacity,
    server_capacity,
)
from reports.queueing import ServiceModel
from reports.run_data import CellSummary, RunData
from reports.verdict import (
    best_per_worker_count,
    offered_below_capacity,
    per_worker_gain,
    per_worker_ideal,
    scaling_stop,
    series_groups,
)
from reports.verdict_text import LOAD_NAMES, TIMEOUT_ONSET, Verdict, format_load, format_ms, measured

BUSY_TARGET = 0.8  # size for workers at most 80 % busy: at 100 % the queue, and the wait, grow without bound
EXAMPLE_RATES = (10, 50, 100)  # req/s a reader might need to serve


def compute_answer(run: RunData) -> list[Verdict]:
    cells = measured(run.cells)
    service = run.service_model()
    return [inline_or_queued(cells), *unbounded_inline(cells), workers_needed(cells, service)]


def _loads_text(cells: Sequence[CellSummary]) -> str:
    by_mode: dict[str, list[str]] = {}
    for cell in cells:
        by_mode.setdefault(LOAD_NAMES.get(cell.load, cell.load), []).append(format_load(cell))
    return "; ".join(f"{', '.join(loads)} ({mode})" for mode, loads in by_mode.items())


def _overloaded(cell: CellSummary) -> bool:
    """Offered more than its server side can serve (open loop: arrivals above W/S or concurrency/S)."""
    capacity, offered = server_capacity(cell), cell.number("offered_rps")
    return cell.load == "open" and capacity is not None and offered is not None and offered > capacity


def inline_or_queued(cells: Sequence[CellSummary]) -> Verdict:
    """At equal server capacity, at which loads each architecture did better (fewer timeouts, more done)."""
    topic = "inline or queued"
    pairs = [(q, s) for q, s in level_pairs(cells) if same_capacity(q, s)]
    if not pairs:
        return Verdict(
            topic,
            "Inline or queued: no load was run on both architectures at equal server capacity, so this run "
            "cannot separate the architecture from the configuration (the lines below compare what was run).",
            False,
        )
    verdicts = [(q, s, better_architecture(q, s)) for q, s in pairs]
    capacities = sorted(server_capacity(q) or 0 for q, _ in pairs)
    size = f"{capacities[0]:.1f}" + (f"–{capacities[-1]:.1f}" if capacities[-1] > 1.1 * capacities[0] else "")
    service = format_ms(pairs[0][0].number("service_time_ms"))
    text = (
        f"Inline or queued, at equal server capacity (workers / S = concurrency / S ≈ {size} req/s, "
        f"S = {service} per request upstream): "
    )
    parts = [
        f"the {name} did better at {'; '.join(_pair_text(q, s) for q, s, side in verdicts if side == winner)}"
        for winner, name in (("queued", "queued system"), ("sync", "inline baseline"))
        if any(side == winner for _, _, side in verdicts)
    ]
    alike = [s for _, s, side in verdicts if side is None]
    if alike:
        parts.append(
            f"they did alike (timeouts within 1 point, throughput within 10 %) at {_loads_text(alike)}"
        )
    text += "; ".join(parts) + "."
    text += _overload_caveat([(q, s) for q, s, side in verdicts if side == "queued"])
    text += _kept_up_gap([(q, s) for q, s, side in verdicts if side is None])
    return Verdict(topic, text)


def _pair_text(queued: CellSummary, sync: CellSummary) -> str:
    return (
        f"{format_load(sync)} ({LOAD_NAMES.get(sync.load, sync.load)}: timed out "
        f"{100 * (queued.timeout_rate or 0):.1f} % vs {100 * (sync.timeout_rate or 0):.1f} %, completed "
        f"{queued.throughput_rps or 0:.1f} vs {sync.throughput_rps or 0:.1f} req/s, queued vs inline)"
    )


def _overload_caveat(queued_better: Sequence[tuple[CellSummary, CellSummary]]) -> str:
    """Where the queue's lead comes from holding an overload, say that the lead is bounded in time."""
    overloaded = [(q, s) for q, s in queued_better if _overloaded(s)]
    if not overloaded:
        return ""
    queued, sync = overloaded[-1]
    capacity = server_capacity(queued) or 0
    offered = queued.number("offered_rps") or 0
    window = queued.number("duration_s")
    neither = " neither kept up:" if (queued.timeout_rate or 0) > TIMEOUT_ONSET else ""
    return (
        f" At {format_load(sync)}{neither} {offered:.1f} req/s arrived for ≈ {capacity:.1f} req/s of "
        "capacity. "
        f"The queue's lead there lasts only while its backlog, growing by ≈ {offered - capacity:.1f} req/s, "
        f"is shorter than the deadline: the longer the overload lasts past this cell's"
        f"{f' {window:g} s' if window else ' window'}, the more the queued system times out too, until "
        "admission control (429) turns the excess away."
    )


def _kept_up_gap(alike: Sequence[tuple[CellSummary, CellSummary]]) -> str:
    """The latency the queue costs where neither side timed out."""
    kept_up = [(q, s) for q, s in alike if max(q.timeout_rate or 0, s.timeout_rate or 0) <= TIMEOUT_ONSET]
    if not kept_up:
        return ""
    gaps = sorted((q.p50_ms or 0) - (s.p50_ms or 0) for q, s in kept_up)
    span = format_ms(gaps[0]) + (f" to {format_ms(gaps[-1])}" if len(gaps) > 1 else "")
    return f" Where both kept up, queued p50 minus inline p50 was {span} (negative: queued faster)."


def unbounded_inline(cells: Sequence[CellSummary]) -> list[Verdict]:
    """A baseline mode with no server-side concurrency bound that never timed out: no workers needed."""
    lines = []
    for mode in sorted({c.mode for c in cells if c.architecture == "sync"}):
        own = [c for c in cells if c.architecture == "sync" and c.mode == mode]
        bounded = any(c.number("concurrency") for c in own)  # threads, or one request per process
        if bounded or any((c.timeout_rate or 0) > TIMEOUT_ONSET for c in own):
            continue
        top = max(own, key=lambda c: c.throughput_rps or 0)
        lines.append(
            Verdict(
                "inline or queued",
                f"{baseline_name(top)}, bounded only by the upstream, had no timeouts at any load tested "
                f"(up to {top.throughput_rps or 0:.1f} req/s completed at {format_load(top)}, p99 "
                f"{format_ms(top.p99_ms)}): when the pipeline only waits on an upstream that takes the "
                "concurrency (as this mock does), inline async needs no workers. A queue pays off when the "
                "upstream or the machine caps concurrency, or when bursts must be held rather than refused.",
            )
        )
    return lines


def _sizing_group(cells: Sequence[CellSummary]) -> list[CellSummary]:
    """The queued cells of one mode and load mode with the most worker counts (closed loop on a tie)."""
    groups = series_groups((c for c in cells if c.architecture == "queued"), by_config=False)
    if not groups:
        return []
    # keys are (architecture, mode, load)
    key = max(
        groups, key=lambda k: (len({c.workers for c in groups[k]}), k[2] == "closed", k[1] == "longpoll")
    )
    return groups[key]


def workers_needed(cells: Sequence[CellSummary], service: ServiceModel | None) -> Verdict:
    """Per-worker throughput measured across worker counts → workers for example rates at 80 % busy."""
    topic = "workers needed"
    group = _sizing_group(cells)
    best = best_per_worker_count(group)
    ideal = per_worker_ideal(group, service)
    if len(best) < 2 or ideal is None:
        return Verdict(
            topic,
            "How many workers: fewer than two queued worker counts measured, so no per-worker throughput "
            "to size from.",
            False,
        )
    stop = scaling_stop(best, ideal)
    scaling = best[: stop if stop is not None else len(best)]
    if len(scaling) < 2:
        return Verdict(
            topic,
            f"How many workers: throughput did not grow past {scaling[0].workers} worker(s) on this machine, "
            "so adding workers here does not serve more.",
        )
    per_worker = per_worker_gain(scaling)
    largest = scaling[-1].workers or 0
    sizes = []
    for rate in EXAMPLE_RATES:
        count = math.ceil(rate / (BUSY_TARGET * per_worker))
        sizes.append(f"{rate} req/s → {count}" + (" (extrapolated)" if count > largest else ""))
    service_s = 1 / ideal
    text = (
        f"How many workers: each worker served {per_worker:.2f} req/s "
        f"({100 * per_worker / ideal:.0f} % of 1/S, S = {format_ms(1000 * service_s)} per request), "
        f"measured from {scaling[0].workers} to {largest} workers ({best[0].mode}, "
        f"{LOAD_NAMES.get(best[0].load, best[0].load)}). At most {100 * BUSY_TARGET:.0f} % busy, that is "
        f"{'; '.join(sizes)} workers. Counts scale with your upstream's time per request S' as S'/S."
    )
    if stop is not None:
        high, top = best[stop], scaling[-1].throughput_rps or 0
        if offered_below_capacity(high, ideal):
            text += f" {high.workers} workers were offered less than their capacity: sized from ≤ {largest}."
        else:
            text += (
                f" Past {largest} workers throughput stopped growing on this machine ({high.workers} workers "
                f"served {high.throughput_rps or 0:.1f} req/s): above ≈ {top:.0f} req/s the limit is not the "
                "worker count here."
            )
    return Verdict(topic, text)
