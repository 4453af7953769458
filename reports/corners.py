"""The four corners: inline threadpool (sync), inline asyncio, queued RQ (sync workers), queued SAQ (async
workers), compared at equal load — which to pick for which load on this run's upstream, and what each costs
in memory per process and per in-flight job.

The section exists only in a run with SAQ cells and at least one other corner (a run without SAQ builds the
report it always did); a corner without cells is left out of every line. At each load both corners ran
(same load mode, same users or arrival rate: the same seeds, so the trials pair), each corner is
represented by its cell with the highest throughput there; the leader (highest throughput) is compared with
every other corner by the paired trial differences of reports/comparison.py (timeouts within ±1 point,
throughput within ±10 %: "alike"; a decided difference past the margin: "better"; else "cannot tell").

Memory (reports/concurrency.py for the concurrency): RSS in MiB, means over the measured window
(loadtests/sweep/sampler.py). Per process: a worker process (queued) or a baseline process (inline). Per
in-flight job: all the serving role's memory (the workers', the pool's parent included; the baseline's) over
the total concurrency; the queued API's own RSS is shown apart. Intervals: Student t across trials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reports.comparison import PairVerdict, compare
from reports.concurrency import CORNERS, concurrency, corner
from reports.intervals import Interval, mean_interval
from reports.run_data import CellSummary, RunData
from reports.verdict_text import (
    LOAD_NAMES,
    Verdict,
    format_interval,
    format_load,
    measured,
    percent_text,
    percentile_text,
    rate_text,
)

TOPIC = "four corners"
TABLE_HEADERS = (
    "corner",
    "cell",
    "load",
    "processes",
    "total concurrency",
    "throughput",
    "p99",
    "RSS per process [MiB]",
    "RSS per in-flight job [MiB]",
    "API RSS [MiB]",
)


def corner_cells(cells: Sequence[CellSummary]) -> dict[str, list[CellSummary]]:
    """Measured cells by corner, only corners that have cells (queued: long-poll cells when there are any,
    the client's polling being no part of the engine)."""
    found: dict[str, list[CellSummary]] = {}
    for cell in measured(cells):
        name = corner(cell)
        if name is not None and cell.throughput_rps is not None:
            found.setdefault(name, []).append(cell)
    for name, members in found.items():
        longpoll = [c for c in members if c.architecture != "queued" or c.mode == "longpoll"]
        found[name] = sorted(longpoll or members, key=lambda c: (c.load, c.load_value or 0))
    return {name: found[name] for name in CORNERS if name in found}


def by_upstream(cells: Sequence[CellSummary]) -> dict[str, list[CellSummary]]:
    """Cells per upstream, for the upstreams where the section applies: corners are compared on one upstream
    only (the same 30 req/s means something else on an upstream with a knee and on one without)."""
    groups: dict[str, list[CellSummary]] = {}
    for cell in cells:
        groups.setdefault(cell.upstream, []).append(cell)
    return {name: members for name, members in groups.items() if applies(members)}


def applies(cells: Sequence[CellSummary]) -> bool:
    """The section exists: SAQ cells and at least one other corner."""
    found = corner_cells(cells)
    return "queued SAQ" in found and len(found) >= 2


# ---- memory --------------------------------------------------------------------------------------------


def _per_process(trial: CellSummary) -> float | None:
    return trial.number("rss_worker_mb" if trial.architecture == "queued" else "rss_baseline_mb")


def _role_total(trial: CellSummary) -> float | None:
    """The serving role's whole RSS: the recorded sum, else per process × processes."""
    queued = trial.architecture == "queued"
    total = trial.number("rss_workers_total_mb" if queued else "rss_baseline_total_mb")
    if total is not None:
        return total
    per_process = _per_process(trial)
    count = trial.number("worker_processes") if queued else concurrency(trial).processes
    return None if per_process is None or count is None else per_process * count


def _per_job(trial: CellSummary) -> float | None:
    total, jobs = _role_total(trial), concurrency(trial).total
    return None if total is None or not jobs else total / jobs


def _api(trial: CellSummary) -> float | None:
    return trial.number("rss_api_mb") if trial.architecture == "queued" else None


def _across_trials(cell: CellSummary, value: Callable[[CellSummary], float | None]) -> Interval | None:
    values = [v for v in (value(t) for t in cell.runs) if v is not None]
    return mean_interval(values) if values else None


@dataclass(frozen=True)
class Memory:
    per_process: Interval | None
    per_job: Interval | None
    api: Interval | None


def memory(cell: CellSummary) -> Memory:
    return Memory(
        _across_trials(cell, _per_process), _across_trials(cell, _per_job), _across_trials(cell, _api)
    )


def mib_text(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    return format_interval(interval.clipped(0.0), lambda v: f"{v:.1f}" if v < 10 else f"{v:.0f}", "MiB")


# ---- at equal load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One load both (or more) corners ran at: each corner's best cell, the leader, and the comparisons."""

    load: str
    value: float
    best: Mapping[str, CellSummary]  # corner → its cell with the highest throughput at this load
    leader: str
    pairs: Mapping[str, PairVerdict]  # other corner → compare(leader's cell, its cell)


def levels(found: Mapping[str, Sequence[CellSummary]]) -> list[Level]:
    by_level: dict[tuple[str, float], dict[str, CellSummary]] = {}
    for name, cells in found.items():
        for cell in cells:
            if cell.load_value is None:
                continue
            slot = by_level.setdefault((cell.load, cell.load_value), {})
            if name not in slot or (cell.throughput_rps or 0) > (slot[name].throughput_rps or 0):
                slot[name] = cell
    result = []
    for (load, value), best in sorted(by_level.items()):
        if len(best) < 2:
            continue
        leader = max(best, key=lambda name: best[name].throughput_rps or 0)
        pairs = {name: compare(best[leader], cell) for name, cell in best.items() if name != leader}
        result.append(Level(load, value, best, leader, pairs))
    return result


def _relation(pair: PairVerdict) -> str:
    """How the other corner did against the leader (the pair's first side)."""
    if pair.winner == "queued":  # compare()'s first side: the leader
        return "worse"
    if pair.alike:
        return "alike"
    if pair.winner == "sync" or pair.mixed:
        return "better on one measure, worse on another"
    return "cannot tell"


def _figures(cell: CellSummary) -> str:
    stats = cell.stats
    return (
        f"completed {rate_text(stats.throughput)}, p99 {percentile_text(stats, 99)}, timed out "
        f"{percent_text(stats.timeout_rate)}"
    )


def _config(cell: CellSummary) -> str:
    found = concurrency(cell)
    total = count_text(found.total)
    if cell.architecture == "queued":
        return f"{cell.workers} process{'es' if cell.workers != 1 else ''}, {total} jobs in flight"
    if found.upstream_bound:
        return f"{cell.config_label or 'p1'}, upstream-bound ({total} in flight offered)"
    return f"{cell.config_label}, {total} at once"


def level_text(level: Level, detail: bool = True) -> str:
    """`at 64 users (closed loop): pick …`, with every corner's figures when `detail`."""
    leader = level.best[level.leader]
    where = f"{format_load(leader)} ({LOAD_NAMES.get(level.load, level.load)})"
    parts = []
    for name, pair in level.pairs.items():
        relation = _relation(pair)
        more = f"; {pair.more_trials()}" if relation == "cannot tell" else ""
        parts.append(f"{name} [{_config(pair.sync)}] did {relation} ({_figures(pair.sync)}{more})")
    alike = [name for name, pair in level.pairs.items() if _relation(pair) == "alike"]
    if all(_relation(p) == "worse" for p in level.pairs.values()):
        pick = f"pick {level.leader}"
    elif all(_relation(p) in ("worse", "alike") for p in level.pairs.values()):
        lightest = _lightest([level.leader, *alike], level.best)
        pick = f"{' and '.join([level.leader, *alike])} did alike; pick {lightest}"
    else:
        open_ = [name for name, pair in level.pairs.items() if _relation(pair) not in ("worse", "alike")]
        pick = f"no pick from this run between {level.leader} (the highest throughput) and {', '.join(open_)}"
    limited = [name for name, cell in level.best.items() if cell.testbed_limit]
    if limited:
        pick += f" (the machine limited {', '.join(limited)} here: those figures measure this testbed too)"
    if not detail:
        return f"at {where}: {pick}"
    first = f"Highest throughput: {level.leader} [{_config(leader)}] {_figures(leader)}"
    return f"at {where}: {pick}. {first}; {'; '.join(parts)}"


def _in_all(trial: CellSummary) -> float | None:
    """The memory a cell's configuration took in all: the serving role's, plus the queued API's."""
    total, api = _role_total(trial), _api(trial)
    if total is None or (trial.architecture == "queued" and api is None):
        return None
    return total + (api or 0.0)


def _lightest(names: Sequence[str], best: Mapping[str, CellSummary]) -> str:
    """Of corners that did alike at one load, the one that took the least memory in all there (its
    interval not compared: a tie-break, said as such); memory unknown: no pick by memory."""
    known = {name: found for name in names if (found := _across_trials(best[name], _in_all)) is not None}
    if len(known) < len(names):
        return "by memory cannot be said (not recorded for every corner)"
    ordered = sorted(known, key=lambda n: known[n].estimate)
    others = ", ".join(f"{name} {mib_text(known[name])}" for name in ordered[1:])
    return (
        f"the one taking the least memory in all, {ordered[0]} ({mib_text(known[ordered[0]])}, vs {others})"
    )


def memory_text(found: Mapping[str, Sequence[CellSummary]]) -> str:
    """Per corner, the memory of its cell with the most concurrency."""
    parts = []
    for name, cells in found.items():
        top = max(cells, key=lambda c: concurrency(c).total or 0)
        mem = memory(top)
        if mem.per_process is None:
            continue
        api = f", plus the API's {mib_text(mem.api)}" if mem.api is not None else ""
        parts.append(
            f"{name} {mib_text(mem.per_job)} per in-flight job, {mib_text(mem.per_process)} per process "
            f"[{_config(top)}]{api}"
        )
    if not parts:
        return " Memory was not recorded in this run."
    return " Memory (RSS, mean over the window): " + "; ".join(parts) + "."


def upstream_text(run: RunData, upstream: str = "") -> str:
    resolved = run.config.get("resolved")
    mock = resolved.get("mock") if isinstance(resolved, Mapping) else None
    name = upstream or (mock.get("upstream") if isinstance(mock, Mapping) else None)
    service = run.service_model()
    if isinstance(name, str) and name:
        return f"upstream '{name}'"
    if service is not None:
        return f"a fixed-latency upstream that takes any concurrency ({service.source})"
    return "an upstream of unknown latency"


def corners_answer(run: RunData) -> list[Verdict]:
    """The Answer's lines on the four corners, one per upstream they ran on (none without SAQ cells)."""
    return [_corners_line(run, upstream, cells) for upstream, cells in by_upstream(run.cells).items()]


def _corners_line(run: RunData, upstream: str, cells: Sequence[CellSummary]) -> Verdict:
    found = corner_cells(cells)
    compared = levels(found)
    head = (
        f"Inline or queued, sync or async ({', '.join(found)}; on {upstream_text(run, upstream)}, 95 % "
        "intervals across trials): "
    )
    if not compared:
        return Verdict(
            TOPIC,
            head
            + "no load was run on two of these corners, so this run cannot rank them."
            + memory_text(found),
            False,
        )
    text = head + "; ".join(level_text(level, detail=False) for level in compared) + "."
    text += memory_text(found)
    text += (
        " The pick holds for this upstream and these loads; a queued corner also keeps accepted requests "
        "through a restart and holds bursts instead of refusing them, which these figures do not price."
    )
    if any(concurrency(c).upstream_bound for members in found.values() for c in members):
        text += (
            " Inline asyncio has no server-side bound: its concurrency is the load it was offered, so its "
            "memory per in-flight job is per request offered."
        )
    return Verdict(TOPIC, text)


def corners_verdicts(run: RunData) -> list[Verdict]:
    """The section's lines: one per upstream and load compared, with the trials that would decide."""
    lines = []
    groups = by_upstream(run.cells)
    for upstream, cells in groups.items():
        for level in levels(corner_cells(cells)):
            text = level_text(level)
            where = f" (on {upstream_text(run, upstream)})" if len(groups) > 1 else ""
            lines.append(Verdict(TOPIC, text[0].upper() + text[1:] + where + "."))
    return lines


def count_text(value: float | None) -> str:
    """`8`, or `8.3` for a mean (Little's law, mean worker processes)."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def table_rows(cells: Sequence[CellSummary]) -> list[list[str]]:
    """The section's table (none when the section does not apply)."""
    if not applies(cells):
        return []
    rows = []
    for name, members in corner_cells(cells).items():
        for cell in members:
            found, mem = concurrency(cell), memory(cell)
            total = count_text(found.total)
            rows.append(
                [
                    name,
                    cell.cell_id,
                    format_load(cell) + f" ({LOAD_NAMES.get(cell.load, cell.load)})",
                    count_text(found.processes),
                    total + (" (offered: upstream-bound)" if found.upstream_bound else ""),
                    rate_text(cell.stats.throughput),
                    percentile_text(cell.stats, 99),
                    mib_text(mem.per_process),
                    mib_text(mem.per_job),
                    mib_text(mem.api) if cell.architecture == "queued" else "—",
                ]
            )
    return rows
