"""Queued vs sync at the same load: p99 ratio, timeout rate and ok throughput, computed from summary.csv.

Pairs are chosen so that a difference can be the architecture's: equal server-side capacity (W/S vs
concurrency/S) first, and a note says so when the capacities differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reports.run_data import CellSummary, workers_text
from reports.verdict_text import (
    LOAD_NAMES,
    TIMEOUT_ONSET,
    Verdict,
    format_load,
    format_ms,
    measured,
    series_name,
)

CAPACITY_TOLERANCE = 0.10  # capacities this close count as "the same size" in a queued vs sync comparison
THROUGHPUT_DIFFERENCE = 0.10  # ok throughputs further apart than this are worth a queued vs sync line


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


def baseline_name(sync: CellSummary) -> str:
    """E.g. "sync/threadpool (p1 t8)"."""
    return f"sync/{sync.mode}" + (f" ({sync.config_label})" if sync.config_label else "")


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
    if _at_deadline(queued, deadline_s) and _at_deadline(sync, deadline_s):
        return Verdict(topic, _both_capped_text(queued, sync, where, deadline_s or 0))
    ratio = queued.p99_ms / sync.p99_ms
    relation = "lower" if ratio < 1 else "higher" if ratio > 1 else "equal"
    sync_name = baseline_name(sync)
    text = (
        f"At {format_load(sync)} ({where}), queued/{queued.mode} with {workers_text(queued.workers)} "
        "has a p99 "
        f"{ratio:.2f}× that of {sync_name} ({relation}: {format_ms(queued.p99_ms)} vs "
        f"{format_ms(sync.p99_ms)})."
    )
    if same_capacity(queued, sync) is False:
        text += _capacity_differs_note(queued, sync)
    capped = [c for c in (queued, sync) if _at_deadline(c, deadline_s)]
    if capped:
        names = " and ".join(series_name(c) for c in capped)
        text += f" The p99 of {names} sits at the deadline: the real tail is longer than shown."
    return Verdict(topic, text)


def _at_deadline(cell: CellSummary, deadline_s: float | None) -> bool:
    return bool(deadline_s) and cell.p99_ms is not None and cell.p99_ms >= (deadline_s or 0) * 1000


def _both_capped_text(queued: CellSummary, sync: CellSummary, where: str, deadline_s: float) -> str:
    return (
        f"At {format_load(sync)} ({where}), the p99 of both queued/{queued.mode} with "
        f"{workers_text(queued.workers)} and {baseline_name(sync)} sits at the {deadline_s:g} s deadline "
        f"({format_ms(queued.p99_ms)} vs {format_ms(sync.p99_ms)}): p99 cannot rank them; their timeouts "
        "and throughput can (below)."
    )


def same_capacity(queued: CellSummary, sync: CellSummary) -> bool | None:
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
    usable = _with_throughput(cells)
    architectures = {c.architecture for c in usable}
    if not {"queued", "sync"} <= architectures:
        missing = " and ".join(sorted({"queued", "sync"} - architectures))
        text = f"No measured {missing} cells in this run: cannot compare timeouts and throughput."
        return [Verdict(topic, text, False)]
    lines = []
    for load, pairs in _pairs_by_load(usable):
        where = LOAD_NAMES.get(load, load)
        if not pairs:
            text = (
                f"{where.capitalize()}: no load level was run on both architectures: "
                "cannot compare timeouts and throughput."
            )
            lines.append(Verdict(topic, text, False))
            continue
        for chosen_queued, chosen_sync in pairs:
            if _outcomes_differ(chosen_queued, chosen_sync):
                lines.append(Verdict(topic, _outcome_text(chosen_queued, chosen_sync, where)))
    return lines


def _with_throughput(cells: Sequence[CellSummary]) -> list[CellSummary]:
    return [c for c in measured(cells) if c.throughput_rps is not None]


def _pairs_by_load(
    usable: Sequence[CellSummary],
) -> list[tuple[str, list[tuple[CellSummary, CellSummary]]]]:
    """Per load mode, the preferred (queued, sync) pair at each load level both ran at (none: empty)."""
    groups = []
    for load in sorted({c.load for c in usable}):
        queued = [c for c in usable if c.load == load and c.architecture == "queued"]
        sync = [c for c in usable if c.load == load and c.architecture == "sync"]
        levels = {c.load_value for c in queued} & {c.load_value for c in sync}
        common = sorted(v for v in levels if v is not None)
        groups.append((load, [_preferred_pair(queued, sync, level) for level in common]))
    return groups


def _preferred_pair(
    queued: Sequence[CellSummary], sync: Sequence[CellSummary], level: float
) -> tuple[CellSummary, CellSummary]:
    pairs = [(q, s) for q in queued if q.load_value == level for s in sync if s.load_value == level]
    return min(pairs, key=_pair_preference)


def level_pairs(cells: Sequence[CellSummary]) -> list[tuple[CellSummary, CellSummary]]:
    """The (queued, sync) pairs the outcome lines compare, at each load level both ran at, per load mode."""
    usable = _with_throughput(cells)
    return [pair for _, pairs in _pairs_by_load(usable) for pair in pairs]


def better_architecture(queued: CellSummary, sync: CellSummary) -> str | None:
    """The side ("queued" or "sync") that did better on throughput or timeouts and worse on neither; None
    where the outcome lines see no difference."""
    if not _outcomes_differ(queued, sync):
        return None
    q_rps, s_rps = _compared_rate(queued), _compared_rate(sync)
    q_late, s_late = queued.timeout_rate or 0, sync.timeout_rate or 0
    more = "" if _spread(q_rps, s_rps) <= THROUGHPUT_DIFFERENCE else "queued" if q_rps > s_rps else "sync"
    fewer = "" if abs(q_late - s_late) <= TIMEOUT_ONSET else "queued" if q_late < s_late else "sync"
    sides = {more, fewer} - {""}
    return sides.pop() if len(sides) == 1 else None


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


def _compared_rate(cell: CellSummary) -> float:
    return _served(cell) if cell.load == "open" else cell.throughput_rps or 0


def _outcomes_differ(queued: CellSummary, sync: CellSummary) -> bool:
    if max(queued.timeout_rate or 0, sync.timeout_rate or 0) > TIMEOUT_ONSET:
        return True
    if _spread(queued.throughput_rps or 0, sync.throughput_rps or 0) <= THROUGHPUT_DIFFERENCE:
        return False
    # In open loop a gap that only mirrors a gap in offered load (both kept up) is not the systems' doing.
    return queued.load != "open" or _spread(_served(queued), _served(sync)) > THROUGHPUT_DIFFERENCE


def _outcome_text(queued: CellSummary, sync: CellSummary, where: str) -> str:
    q_rps, s_rps = queued.throughput_rps or 0, sync.throughput_rps or 0
    sync_name = baseline_name(sync)
    text = (
        f"At {format_load(sync)} ({where}), queued/{queued.mode} with {workers_text(queued.workers)} "
        "timed out "
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
    for side, name in ((queued, "queued"), (sync, "inline")):
        if side.requests and side.timeouts == side.requests and (side.throughput_rps or 0) > 0:
            text += (
                f" Every {name} request sent in the window timed out: its {side.throughput_rps:.1f} req/s "
                "are answers to requests sent during warm-up."
            )
    same = same_capacity(queued, sync)
    if same:
        text += (
            f" Both can serve about {server_capacity(queued) or 0:.1f} req/s at most, so the difference "
            "is the architecture's."
        )
    elif same is False:
        text += _capacity_differs_note(queued, sync)
    return text
