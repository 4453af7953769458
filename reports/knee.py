"""The Answer's lines about an upstream with a capacity knee: where inline asyncio starts to time out, whether
a worker pool keeps the upstream at its knee and serves more within the deadline, and what a burst does in
each design.

Every figure comes from the run folder: timeouts, goodput and throughput from summary.csv with their
intervals (reports/cell_stats.py), the queued-minus-inline verdicts from the paired trials
(reports/comparison.py, the same margins as the other Answer lines), the calls in flight and the call times
from the mock's call log (reports/upstream.py), the knee from the curve the harness wrote into config.json.
A line that the data do not support says so; where the queue did not help, the line says that.
"""

from __future__ import annotations

from collections.abc import Sequence

from reports.comparison import PairVerdict, compare, measure_text, verdict_words
from reports.concurrency import queued_text
from reports.run_data import CellSummary, RunData
from reports.significance import Outcome
from reports.upstream import CellUpstream, UpstreamModel, cell_upstream, upstream_models
from reports.verdict import timing_out
from reports.verdict_text import Verdict, format_interval, format_load, format_ms, percent_text

TOPIC = "upstream knee"


def knee_lines(run: RunData, cells: Sequence[CellSummary]) -> list[Verdict]:
    """The knee lines for every upstream of the run that has a knee ([] when none has)."""
    models = upstream_models(run)
    lines: list[Verdict] = []
    for name, model in sorted(models.items()):
        if not model.has_knee:
            continue
        own = [c for c in cells if c.upstream == name]
        contrast = [c for c in cells if c.upstream != name and not models.get(c.upstream, model).has_knee]
        lines.append(asyncio_onset(run, own, model, contrast))
        lines += pool_vs_asyncio(run, own, model)
        lines += bursts(run, own, model)
    return lines


def _in_flight_text(seen: CellUpstream | None) -> str:
    if seen is None or seen.in_flight is None:
        return "calls in flight unknown (no call log)"
    shown = format_interval(seen.in_flight, lambda v: f"{v:.0f}")
    return f"a median {shown} calls in flight at a call's start"


def _call_text(seen: CellUpstream | None, model: UpstreamModel) -> str:
    """`chat calls took a median 2.31 s [2.20 s, 2.40 s], 7.3× the 316 ms of a call alone`."""
    if seen is None or seen.latency is None:
        return "no chat call answered"
    text = f"chat calls took a median {format_interval(seen.latency, lambda v: format_ms(v))}"
    alone = (model.alone or {}).get("latency_ms")
    if alone:
        text += f", {seen.latency.estimate / alone:.1f}× the {format_ms(alone)} of a call alone"
    return text


def _knee_text(model: UpstreamModel) -> str:
    return f"knee ≈ {model.knee_concurrency} calls in flight, ≈ {model.knee_rps or 0:.1f} req/s"


def _steady_asyncio(cells: Sequence[CellSummary]) -> list[CellSummary]:
    found = [c for c in cells if c.architecture == "sync" and c.mode == "asyncio" and c.load == "open"]
    return sorted((c for c in found if not c.burst), key=lambda c: c.load_value or 0)


def asyncio_onset(
    run: RunData, cells: Sequence[CellSummary], model: UpstreamModel, contrast: Sequence[CellSummary]
) -> Verdict:
    """The first open-loop rate at which inline asyncio's timeouts lie clearly above 1 %, with what the
    upstream had in flight there and how slow every call was."""
    own = _steady_asyncio(cells)
    where = f"Inline asyncio on `{model.name}` ({_knee_text(model)})"
    if not own:
        return Verdict(TOPIC, f"{where}: no steady open-loop asyncio cell in this run.", False)
    onset = next((c for c in own if timing_out(c) is Outcome.ABOVE), None)
    below = [c for c in own if onset is None or (c.load_value or 0) < (onset.load_value or 0)]
    parts = []
    if below:
        kept = below[-1]
        seen = cell_upstream(run, kept)
        parts.append(
            f"at {format_load(kept)} it timed out {percent_text(kept.stats.timeout_rate)} "
            f"({_in_flight_text(seen)}; {_call_text(seen, model)})"
        )
    if onset is None:
        text = (
            f"{where}: no steady load tested had timeouts clearly above 1 % (up to {format_load(own[-1])}): "
            + "; ".join(parts)
            + "."
        )
        return Verdict(TOPIC, text + _contrast_text(run, contrast, own[-1]))
    seen = cell_upstream(run, onset)
    parts.append(
        f"from {format_load(onset)} it timed out {percent_text(onset.stats.timeout_rate)} and answered "
        f"{percent_text(onset.stats.slo_attainment)} of the requests sent within the deadline "
        f"({_in_flight_text(seen)}; "
        f"{_call_text(seen, model)})"
    )
    text = f"{where} starts to time out between {format_load(below[-1])} and" if below else f"{where}"
    text = (
        f"{text} {format_load(onset)}: " + "; ".join(parts) + ". Nothing bounds the calls it puts on the "
        "upstream, so past the knee every call in flight slows together and requests pass the deadline while "
        "the upstream is still working on them."
    )
    return Verdict(TOPIC, text + _contrast_text(run, contrast, onset))


def _contrast_text(run: RunData, contrast: Sequence[CellSummary], cell: CellSummary) -> str:
    same = [c for c in _steady_asyncio(contrast) if c.load_value == cell.load_value]
    if not same:
        return ""
    other = same[0]
    seen = cell_upstream(run, other)
    latency = (
        ""
        if seen is None or seen.latency is None
        else f", chat call median {format_ms(seen.latency.estimate)}"
    )
    return (
        f" Contrast: at the same {format_load(other)} on `{other.upstream}` (no capacity limit) it timed out "
        f"{percent_text(other.stats.timeout_rate)} ({_in_flight_text(seen)}{latency})."
    )


def _pairs(cells: Sequence[CellSummary], burst: bool) -> list[tuple[CellSummary, CellSummary]]:
    """(queued, inline asyncio) at one open-loop rate, both steady or both bursts."""
    queued = [c for c in cells if c.architecture == "queued" and c.load == "open" and c.burst == burst]
    inline = [
        c
        for c in cells
        if c.architecture == "sync" and c.mode == "asyncio" and c.load == "open" and c.burst == burst
    ]
    return [(q, s) for q in queued for s in inline if q.load_value == s.load_value]


def _side_text(run: RunData, cell: CellSummary, name: str) -> str:
    seen = cell_upstream(run, cell)
    peak = f" (at most {seen.peak_in_flight})" if seen is not None and seen.peak_in_flight is not None else ""
    if seen is not None and seen.before:
        peak += (
            f" — {seen.before} calls of an earlier cell were still on the upstream when its trials started, "
            "and count in flight"
        )
    return (
        f"{name} had {_in_flight_text(seen)}{peak}, timed out {percent_text(cell.stats.timeout_rate)} and "
        f"answered {percent_text(cell.stats.slo_attainment)} of the requests sent within the deadline"
    )


def _verdict_text(pair: PairVerdict) -> str:
    measures = "; ".join(measure_text(m) for m in pair.measures)
    words = verdict_words(pair)
    if pair.winner != "queued":
        words = f"the queue did not help here: {words}"
    return f"Queued minus inline: {measures}: {words}."


def pool_vs_asyncio(run: RunData, cells: Sequence[CellSummary], model: UpstreamModel) -> list[Verdict]:
    """At one steady rate, a worker pool against inline asyncio: calls in flight, timeouts, goodput."""
    lines = []
    for queued, inline in _pairs(cells, burst=False):
        pair = compare(queued, inline)
        trials = min(queued.stats.trials, inline.stats.trials)
        past = (queued.load_value or 0) > (model.knee_rps or 0)
        text = (
            f"A worker pool at {format_load(queued)} on `{model.name}` ({'past' if past else 'below'} the "
            f"knee's rate; {_knee_text(model)}; {trials} paired trials): "
            f"{_side_text(run, queued, queued_text(queued))}; "
            f"{_side_text(run, inline, 'inline asyncio')}. {_verdict_text(pair)}"
        )
        seen = cell_upstream(run, queued)
        if seen is not None and seen.peak_in_flight is not None and model.knee_concurrency:
            text += _at_knee_text(seen.peak_in_flight, queued.workers, model.knee_concurrency)
        lines.append(Verdict(TOPIC, text))
    return lines


def _at_knee_text(peak: int, workers: int | None, knee: int) -> str:
    if workers is None:
        return ""
    held = peak <= workers
    if held and workers <= knee:
        return (
            f" The pool held the upstream at or below its knee: never more calls than its {workers} workers."
        )
    if held:
        return f" The pool bounded the calls at its {workers} workers, past the knee of {knee}."
    return ""


def bursts(run: RunData, cells: Sequence[CellSummary], model: UpstreamModel) -> list[Verdict]:
    """What a burst did in each design: how much each answered within the deadline, and the upstream."""
    lines = []
    for queued, inline in _pairs(cells, burst=True):
        pair = compare(queued, inline)
        duration = queued.number("duration_s") or 0
        rate = queued.load_value or 0
        text = (
            f"A burst of {rate:g} req/s for {duration:g} s (≈ {rate * duration:.0f} requests, "
            f"{rate / (model.knee_rps or rate):.1f}× the knee's rate) on `{model.name}`: "
            f"{_side_text(run, queued, queued_text(queued))}, p50 "
            f"{format_ms(queued.p50_ms)}; {_side_text(run, inline, 'inline asyncio')}, p50 "
            f"{format_ms(inline.p50_ms)}. {_verdict_text(pair)}"
        )
        lines.append(Verdict(TOPIC, text))
    if not lines and any(c.burst for c in cells):
        lines.append(
            Verdict(TOPIC, f"Bursts on `{model.name}` ran in one design only: nothing to compare.", False)
        )
    return lines
