"""Queued vs sync at the same load: p99, timeout rate and ok throughput, with intervals and verdicts.

Pairs are chosen so that a difference can be the architecture's: equal server-side capacity (W/S vs
concurrency/S) first, and a note says so when the capacities differ. The two cells of a pair ran their
trials under the same seeds (the same arrivals, requests and upstream draws), so each measure is compared
by its paired per-trial difference (queued − inline, Student t), and reports/significance.py turns the
interval into "better", "alike" or "cannot tell" against a stated margin:
- timeouts: the share of requests past the deadline; alike within ±1 point;
- throughput: open loop, the share of the offered requests answered ok (both sides were offered the same
  requests, so this compares what each did with the same load; the rate of answers inside the window would
  add the noise of the window's edges); closed loop, ok responses per second as a share of the larger of the
  two throughputs; alike within ±10 %;
- SLO attainment (when an SLO tighter than the deadline was set): alike within ±1 point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from reports.concurrency import concurrency
from reports.intervals import Interval, paired_difference, welch_difference
from reports.run_data import CellSummary, workers_text
from reports.significance import Decision, Outcome, decide
from reports.verdict_text import (
    LOAD_NAMES,
    TIMEOUT_ONSET,
    Verdict,
    format_interval,
    format_load,
    format_ms,
    measured,
    more_trials_text,
    percent_text,
    percentile_text,
    points_text,
    rate_text,
    series_name,
)

CAPACITY_TOLERANCE = 0.10  # capacities this close count as "the same size" in a queued vs sync comparison
THROUGHPUT_MARGIN = 0.10  # throughputs closer than this (share of offered or of the larger) are alike
TIMEOUT_MARGIN = TIMEOUT_ONSET  # timeout shares closer than 1 point are alike
SLO_MARGIN = 0.01  # SLO attainments closer than 1 point are alike


def _most_workers(cells: Iterable[CellSummary]) -> dict[str, CellSummary]:
    """Per queued mode, the cell with the most workers."""
    best: dict[str, CellSummary] = {}
    for cell in cells:
        if cell.mode not in best or (cell.workers or 0) > (best[cell.mode].workers or 0):
            best[cell.mode] = cell
    return best


# ---- pairing trials ----------------------------------------------------------------------------------------


def paired_trials(a: CellSummary, b: CellSummary) -> list[tuple[CellSummary, CellSummary]]:
    """Trials of `a` and `b` that ran under the same seed (the same load, requests and upstream draws)."""
    by_seed = {t.seed: t for t in b.runs if t.seed is not None}
    return [(t, by_seed[t.seed]) for t in a.runs if t.seed is not None and t.seed in by_seed]


def difference(
    a: CellSummary, b: CellSummary, value: Callable[[CellSummary], float | None]
) -> Interval | None:
    """Mean of value(a) − value(b) over the trials: paired by seed where the trials share seeds, else the
    difference of two independent means (Welch)."""
    left_paired: list[float] = []
    right_paired: list[float] = []
    for p, q in paired_trials(a, b):
        x, y = value(p), value(q)
        if x is not None and y is not None:
            left_paired.append(x)
            right_paired.append(y)
    if left_paired:
        return paired_difference(left_paired, right_paired)
    left = [v for v in (value(t) for t in a.runs) if v is not None]
    right = [v for v in (value(t) for t in b.runs) if v is not None]
    if not left or not right:
        return None
    return welch_difference(left, right)


# ---- a queued vs inline pair ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One measure of a pair: the decision on queued − inline, and which side that favours."""

    name: str
    decision: Decision
    higher_is_better: bool
    shown: Interval | None = None  # the difference in readable units when the decision's scale is not

    @property
    def better(self) -> str | None:
        outcome = self.decision.outcome
        if outcome is Outcome.ABOVE:
            return "queued" if self.higher_is_better else "sync"
        if outcome is Outcome.BELOW:
            return "sync" if self.higher_is_better else "queued"
        return None


@dataclass(frozen=True)
class PairVerdict:
    queued: CellSummary
    sync: CellSummary
    measures: tuple[Measure, ...]

    @property
    def winner(self) -> str | None:
        """The side that did better on at least one measure and worse on none."""
        sides = {m.better for m in self.measures} - {None}
        return sides.pop() if len(sides) == 1 else None

    @property
    def mixed(self) -> bool:
        return len({m.better for m in self.measures} - {None}) > 1

    @property
    def alike(self) -> bool:
        return all(m.decision.outcome is Outcome.ALIKE for m in self.measures)

    @property
    def undecided(self) -> list[Measure]:
        return [m for m in self.measures if m.decision.outcome is Outcome.UNDECIDED]

    @property
    def trial_s(self) -> float | None:
        """Wall time of one more trial of one cell (warm-up + window + the sweep's ≈ 5 s between trials)."""
        duration = self.queued.number("duration_s")
        return None if duration is None else duration + (self.queued.number("warmup_s") or 0) + 5.0

    def more_trials(self) -> str:
        """What would decide the undecided measures (the one needing the most trials)."""
        pending = self.undecided
        if not pending:
            return ""
        hardest = max(pending, key=lambda m: (m.decision.needed is None, m.decision.needed or 0))
        return more_trials_text(hardest.decision, self.trial_s)


def _timeout_share(trial: CellSummary) -> float | None:
    return trial.timeout_rate


def _slo_share(trial: CellSummary) -> float | None:
    met = trial.number("slo_ok")
    return met / trial.requests if met is not None and trial.requests else None


def _served_share(trial: CellSummary) -> float | None:
    """The share of the requests offered in the window that were answered ok."""
    ok = trial.number("ok")
    if ok is None:
        ok = float(trial.requests - trial.timeouts - trial.errors)
    return ok / trial.requests if trial.requests else None


def _answered_rate(trial: CellSummary) -> float | None:
    """Requests offered in the window and answered ok, per second."""
    share, duration = _served_share(trial), trial.number("duration_s")
    offered = trial.number("offered_rps")
    if share is None:
        return None
    if offered is not None:
        return share * offered
    return share * trial.requests / duration if duration else None


def _throughput_scale(queued: CellSummary, sync: CellSummary) -> Callable[[CellSummary], float | None]:
    """Throughput per trial on a common scale: open loop, the share of the offered requests answered ok;
    closed loop, ok responses per second over the larger of the two cells' mean throughputs."""
    if queued.load == "open":
        return _served_share
    scale = max(queued.throughput_rps or 0, sync.throughput_rps or 0) or 1.0
    return lambda trial: (trial.throughput_rps or 0) / scale


def slo_is_tighter(cell: CellSummary) -> bool:
    """An SLO shorter than the deadline (or a submit SLO) was set: attainment says more than timeouts."""
    slo, deadline = cell.number("slo_e2e_ms"), cell.number("deadline_s")
    tighter_e2e = slo is not None and deadline is not None and slo < deadline * 1000
    return tighter_e2e or cell.number("slo_submit_ms") is not None


def compare(queued: CellSummary, sync: CellSummary) -> PairVerdict:
    measures = []
    checks: list[tuple[str, Callable[[CellSummary], float | None], float, bool]] = [
        ("timeouts", _timeout_share, TIMEOUT_MARGIN, False),
        ("throughput", _throughput_scale(queued, sync), THROUGHPUT_MARGIN, True),
    ]
    if slo_is_tighter(queued) or slo_is_tighter(sync):
        checks.append(("SLO attainment", _slo_share, SLO_MARGIN, True))
    for name, value, margin, higher in checks:
        found = difference(queued, sync, value)
        if found is not None:
            rate = _answered_rate if queued.load == "open" else (lambda t: t.throughput_rps)
            shown = difference(queued, sync, rate) if name == "throughput" else None
            measures.append(Measure(name, decide(found, 0.0, margin), higher, shown))
    return PairVerdict(queued, sync, tuple(measures))


# ---- p99 --------------------------------------------------------------------------------------------------


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
                if queued_cell.upstream == sync_cell.upstream:  # against one upstream only
                    lines.append(_p99_line(topic, queued_cell, sync_cell, where, deadline_s))
    return lines


def baseline_name(sync: CellSummary) -> str:
    """E.g. "sync/threadpool (p1 t8)"."""
    return f"sync/{sync.mode}" + (f" ({sync.config_label})" if sync.config_label else "")


def server_capacity(cell: CellSummary) -> float | None:
    """Requests per second the cell's server side can serve at most (W × jobs per worker / S or
    concurrency / S; under an upstream with a capacity knee, its curve at W or concurrency, as the harness
    wrote it)."""
    written = cell.number("server_capacity_rps")
    if written is not None:
        return written
    if cell.upstream and "server_capacity_rps" in cell.extra:
        return None  # written empty: no server-side bound (asyncio)
    service_ms = cell.number("service_time_ms")
    servers = concurrency(cell).total if cell.architecture == "queued" else cell.number("concurrency")
    if not service_ms or not servers:
        return None
    return servers / (service_ms / 1000)


def _p99_relation(queued: CellSummary, sync: CellSummary) -> str | None:
    """ "lower"/"higher" when the two p99 intervals do not overlap; None when they do or are unknown."""
    q, s = queued.stats.percentile(99), sync.stats.percentile(99)
    if q is None or s is None or not (q.known and s.known) or q.overlaps(s):
        return None
    return "lower" if q.estimate < s.estimate else "higher"


def _p99_line(
    topic: str, queued: CellSummary, sync: CellSummary, where: str, deadline_s: float | None
) -> Verdict:
    assert queued.p99_ms is not None and sync.p99_ms is not None
    if _at_deadline(queued, deadline_s) and _at_deadline(sync, deadline_s):
        return Verdict(topic, _both_capped_text(queued, sync, where, deadline_s or 0))
    relation = _p99_relation(queued, sync)
    sync_name = baseline_name(sync)
    verdict = (
        f"{relation}: the intervals do not overlap"
        if relation
        else "cannot tell which is lower from this run (the intervals overlap or are unknown)"
    )
    text = (
        f"At {format_load(sync)} ({where}), queued/{queued.mode} with {workers_text(queued.workers)} "
        f"has a p99 of {percentile_text(queued.stats, 99)}, {sync_name} {percentile_text(sync.stats, 99)} "
        f"(ratio {queued.p99_ms / sync.p99_ms:.2f}×; {verdict})."
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


# ---- timeouts and throughput ------------------------------------------------------------------------------


def outcome_comparison(cells: Sequence[CellSummary]) -> list[Verdict]:
    """Queued vs sync timeout rate and ok throughput at each load both ran at, per load mode: one line per
    load level, with the verdict of the paired differences (p99 alone hides a difference once both tails
    sit at the deadline)."""
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
            lines.append(Verdict(topic, _outcome_text(compare(chosen_queued, chosen_sync), where)))
    return lines


def _with_throughput(cells: Sequence[CellSummary]) -> list[CellSummary]:
    return [c for c in measured(cells) if c.throughput_rps is not None]


def _pairs_by_load(
    usable: Sequence[CellSummary],
) -> list[tuple[str, list[tuple[CellSummary, CellSummary]]]]:
    """Per load mode, the preferred (queued, sync) pair at each load level both ran at (none: empty)."""
    groups = []
    for load in sorted({c.load for c in usable}):
        pairs = []
        for upstream in sorted({c.upstream for c in usable}):  # a pair ran against one upstream
            queued = [c for c in usable if (c.load, c.upstream, c.architecture) == (load, upstream, "queued")]
            sync = [c for c in usable if (c.load, c.upstream, c.architecture) == (load, upstream, "sync")]
            levels = {c.load_value for c in queued} & {c.load_value for c in sync}
            common = sorted(v for v in levels if v is not None)
            pairs += [_preferred_pair(queued, sync, level) for level in common]
        groups.append((load, pairs))
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


def _pair_preference(pair: tuple[CellSummary, CellSummary]) -> tuple[bool, float, int, str, str, str]:
    """Closest capacities first (equal size compares the architectures), then the most workers."""
    queued, sync = pair
    gap = _capacity_gap(queued, sync)
    return (gap is None, gap or 0.0, -(queued.workers or 0), queued.mode, sync.mode, sync.config_label)


def measure_text(measure: Measure) -> str:
    """`timeouts −74.7 points [−78.0, −71.4]`, `throughput +13.1 req/s [12.0, 14.2]` (queued − inline)."""
    if measure.shown is not None:
        return f"{measure.name} {format_interval(measure.shown, lambda v: f'{v:+.1f}', 'req/s')}"
    return f"{measure.name} {points_text(measure.decision.interval)}"


def verdict_words(pair: PairVerdict) -> str:
    """`the queued system did better`, `they did alike`, `cannot tell from this run (…)`."""
    if pair.winner == "queued":
        return "the queued system did better"
    if pair.winner == "sync":
        return "the inline baseline did better"
    if pair.alike:
        return "they did alike"
    if pair.mixed:
        return "each did better on one measure"
    return f"cannot tell from this run ({pair.more_trials()})"


def _outcome_text(pair: PairVerdict, where: str) -> str:
    queued, sync = pair.queued, pair.sync
    sync_name = baseline_name(sync)
    trials = min(queued.stats.trials, sync.stats.trials)
    text = (
        f"At {format_load(sync)} ({where}, {trials} trial{'s' if trials != 1 else ''}), queued/{queued.mode} "
        f"with {workers_text(queued.workers)} timed out {percent_text(queued.stats.timeout_rate)} of "
        f"requests and completed {rate_text(queued.stats.throughput)}; {sync_name} timed out "
        f"{percent_text(sync.stats.timeout_rate)} and completed {rate_text(sync.stats.throughput)}. "
        f"Queued minus inline: {'; '.join(measure_text(m) for m in pair.measures)}: {verdict_words(pair)}."
    )
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
    limited = [
        f"{name} ({c.testbed_limit})" for c, name in ((queued, "queued"), (sync, "inline")) if c.testbed_limit
    ]
    if limited:
        text += f" Testbed-limited: {', '.join(limited)}: the machine may have set these figures."
    return text
