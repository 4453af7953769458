"""Fit the mock's capacity model (mocks/capacity.py) to calls measured against a real upstream.

The model is fitted to the trace itself: every probed call's send time, prompt and output tokens go through
the same scheduler the mock runs (`mocks.capacity.simulate`, virtual time), and the parameters are those
whose simulated first-token, last-token and between-token times match the observed ones best (relative
errors, scipy's `least_squares`, with a robust loss so that calls made late by the network or a busy machine
do not pull the fit). The batch size is an integer: every candidate from 1 to the highest concurrency probed
is tried; when the best is the highest probed, no queue was seen and the batch size is only a lower bound
(said in the notes).
Parameters: `overhead` (time before the engine: network, gateway; the mock's `chat_latency` as a constant),
`step_base`, `step_per_seq`, `prefill_per_token`, `thrash`, `max_batch`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from mocks.capacity import BatchModel, simulate

MIN_TIME_S = 0.005  # relative errors are taken against at least this, so a near-zero time cannot dominate
PARAMETERS = ("overhead", "step_base", "step_per_seq", "prefill_per_token", "thrash")
UPPER = (30.0, 10.0, 1.0, 0.1, 20.0)  # seconds (and a plain factor for thrash): far beyond any real server
THRASH_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
PER_SEQ_SHARES = (0.25, 0.5, 0.75, 1.0)
LOCAL_SEARCHES = 4


@dataclass(frozen=True)
class Observation:
    """One streamed call that completed: times in seconds from the probe's start."""

    concurrency: int
    sent: float
    first_token: float
    last_token: float
    prompt_tokens: int
    output_tokens: int

    @property
    def ttft(self) -> float:
        return self.first_token - self.sent

    @property
    def latency(self) -> float:
        return self.last_token - self.sent

    @property
    def inter_token(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.last_token - self.first_token) / (self.output_tokens - 1)


@dataclass
class Fit:
    model: BatchModel
    overhead_s: float
    rms_relative_error: float
    batch_is_lower_bound: bool
    predicted: list[tuple[float, float]]  # (ttft, latency) per observation
    notes: list[str] = field(default_factory=list)

    def parameters(self) -> dict[str, float]:
        m = self.model
        return {
            "overhead": self.overhead_s,
            "step_base": m.step_base,
            "step_per_seq": m.step_per_seq,
            "prefill_per_token": m.prefill_per_token,
            "thrash": m.thrash,
            "max_batch": float(m.max_batch),
        }


def _model(x: Sequence[float] | np.ndarray, max_batch: int) -> BatchModel:
    return BatchModel(max_batch, float(x[1]), float(x[2]), float(x[3]), float(x[4]))


def predict(
    observations: Sequence[Observation], model: BatchModel, overhead_s: float
) -> list[tuple[float, float]]:
    """(ttft, latency) of each observed call under the model, given the calls' own send times."""
    calls = [(o.sent + overhead_s, o.prompt_tokens, o.output_tokens) for o in observations]
    times = simulate(model, calls)
    return [(first - o.sent, last - o.sent) for o, (first, last) in zip(observations, times, strict=True)]


def _residuals(x: np.ndarray, observations: Sequence[Observation], max_batch: int) -> np.ndarray:
    """Relative errors per call: time to first token, total latency and mean time between tokens (the
    last is smooth in the step times, where the first two jump by a step when a call misses a boundary)."""
    predicted = predict(observations, _model(x, max_batch), float(x[0]))
    out = np.zeros(3 * len(observations))
    for i, (o, (ttft, latency)) in enumerate(zip(observations, predicted, strict=True)):
        out[3 * i] = (ttft - o.ttft) / max(o.ttft, MIN_TIME_S)
        out[3 * i + 1] = (latency - o.latency) / max(o.latency, MIN_TIME_S)
        gap = o.inter_token
        if gap is not None:
            predicted_gap = (latency - ttft) / (o.output_tokens - 1)
            out[3 * i + 2] = (predicted_gap - gap) / max(gap, MIN_TIME_S / 10)
    return out


def initial_guess(observations: Sequence[Observation]) -> list[float]:
    """Start values from the lowest concurrency: its inter-token time is one decode step with one call
    running; its time to first token against the prompt size gives prefill per token (slope) and the
    overhead (what the intercept has beyond one step); how the step grows with concurrency gives per-call."""
    lowest = min(o.concurrency for o in observations)
    alone = [o for o in observations if o.concurrency == lowest]
    gaps = [g for o in alone if (g := o.inter_token) is not None]
    step_one = statistics.median(gaps) if gaps else statistics.median(o.latency for o in alone) / 10
    by_prompt: dict[int, list[float]] = {}
    for o in alone:
        by_prompt.setdefault(o.prompt_tokens, []).append(o.ttft)
    small, large = min(by_prompt), max(by_prompt)
    ttft_small = statistics.median(by_prompt[small])
    slope = (statistics.median(by_prompt[large]) - ttft_small) / (large - small) if large > small else 0.0
    per_token = max(0.0, slope)
    overhead = max(0.0, ttft_small - per_token * small - step_one)
    by_level: dict[int, list[float]] = {}
    for o in observations:
        if (g := o.inter_token) is not None:
            by_level.setdefault(o.concurrency, []).append(g)
    levels = sorted(by_level)
    per_seq = 0.0
    if len(levels) > 1:
        second = levels[1]
        per_seq = max(0.0, (statistics.median(by_level[second]) - step_one) / max(1, second - lowest))
    base = max(1e-4, step_one - per_seq)
    return [overhead, base, per_seq, per_token, 0.1]


def _fit_batch(observations: Sequence[Observation], max_batch: int, start: list[float]) -> Any:
    x0 = np.clip(np.array(start, dtype=float), 0.0, np.array(UPPER) * 0.99)
    return least_squares(
        _residuals,
        x0,
        args=(observations, max_batch),
        bounds=(np.zeros(len(PARAMETERS)), np.array(UPPER)),
        loss="cauchy",  # of the robust losses, the one that let late outliers (a busy machine) pull least
        f_scale=0.05,
        x_scale=np.maximum(x0, 1e-4),
        diff_step=1e-3,
        max_nfev=200,
    )


def _starts(guess: list[float]) -> list[list[float]]:
    """Start points around the guess: the guess reads the per-call step time off the first two levels, where
    the other calls' prefills inflate it, and cannot see thrash at all; so the per-call share of the first
    step is tried lower (the rest going to step_base) and thrash on a grid."""
    overhead, base, per_seq, per_token, _ = guess
    step_one = base + per_seq
    return [
        [overhead, step_one - per_seq * share, per_seq * share, per_token, thrash]
        for share in PER_SEQ_SHARES
        for thrash in THRASH_GRID
    ]


def _cost(x: list[float], observations: Sequence[Observation], max_batch: int) -> float:
    return float(np.sum(_residuals(np.array(x), observations, max_batch) ** 2))


def fit(observations: Sequence[Observation], round_trip_s: float = 0.0) -> Fit:
    """The capacity model that best explains `observations` (at least a few calls per concurrency).

    Every candidate batch size with every start point of a grid around the initial guess (`_starts`) is
    graded, and a local search over the five continuous parameters runs from the best few. The objective has
    steps (a call catches a step boundary or the next), and a search started far off trades thrash against
    the step times and stops in a worse basin: hence many starts, graded cheaply, and more than one search.

    `round_trip_s`: what a trivial request costs the client (network both ways, its own HTTP work). It is
    part of every observed time, and a client of the fitted mock pays it again, so it is taken out of the
    fitted overhead."""
    if len(observations) < 4:
        raise ValueError(f"too few completed calls to fit ({len(observations)}); probe longer")
    highest = max(o.concurrency for o in observations)
    guess = initial_guess(observations)
    graded = sorted(
        (_cost(start, observations, max_batch), max_batch, start)
        for max_batch in range(highest, 0, -1)
        for start in _starts(guess)
    )
    best: tuple[float, int, Any] | None = None
    for _, max_batch, start in graded[:LOCAL_SEARCHES]:
        result = _fit_batch(observations, max_batch, start)
        if best is None or result.cost < best[0]:
            best = (float(result.cost), max_batch, result)
    assert best is not None
    _, max_batch, result = best
    x = [float(v) for v in result.x]
    model = _model(x, max_batch)
    predicted = predict(observations, model, x[0])
    errors = _residuals(np.array(x), observations, max_batch)
    lower_bound = max_batch >= highest
    notes = []
    if lower_bound:
        notes.append(
            f"no call waited for a slot up to {highest} concurrent calls: max_batch = {highest} is a lower "
            "bound and thrash could not be measured (probe higher concurrency to find the knee)"
        )
        model = BatchModel(max_batch, model.step_base, model.step_per_seq, model.prefill_per_token, 0.0)
    return Fit(
        model=model,
        overhead_s=max(0.0, x[0] - round_trip_s),
        rms_relative_error=float(math.sqrt(float(np.mean(errors**2)))),
        batch_is_lower_bound=lower_bound,
        predicted=predicted,
        notes=notes,
    )


def level_table(observations: Sequence[Observation], fitted: Fit) -> list[dict[str, Any]]:
    """Per concurrency: what was measured (medians) and what the fitted model says for the same calls."""
    rows = []
    for level in sorted({o.concurrency for o in observations}):
        pairs = [
            (o, p) for o, p in zip(observations, fitted.predicted, strict=True) if o.concurrency == level
        ]
        calls = [o for o, _ in pairs]
        span = max(o.last_token for o in calls) - min(o.sent for o in calls)
        gaps = [g for o in calls if (g := o.inter_token) is not None]
        rows.append(
            {
                "concurrency": level,
                "calls": len(calls),
                "ttft_p50_ms": round(statistics.median(o.ttft for o in calls) * 1000, 1),
                "inter_token_p50_ms": round(statistics.median(gaps) * 1000, 2) if gaps else None,
                "latency_p50_ms": round(statistics.median(o.latency for o in calls) * 1000, 1),
                "output_tokens_per_s": round(sum(o.output_tokens for o in calls) / span, 1)
                if span > 0
                else None,
                "model_ttft_p50_ms": round(statistics.median(p[0] for _, p in pairs) * 1000, 1),
                "model_latency_p50_ms": round(statistics.median(p[1] for _, p in pairs) * 1000, 1),
            }
        )
    return rows
