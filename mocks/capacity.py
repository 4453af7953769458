"""The capacity model: a finite LLM server as a continuous-batching scheduler, pure logic with no clock.

As in vLLM's engine loop, at most `max_batch` calls decode together. Each engine step gives every running
call one output token and lasts

    step = (step_base + step_per_seq × running + prefill_per_token × prompt tokens admitted)
           × (1 + thrash × waiting / max_batch)

Calls are admitted at step boundaries, first come first served, while fewer than `max_batch` run; their
prefill is folded into the step that admits them, which also gives them their first token. A call arriving
mid-step waits for the boundary; calls beyond `max_batch` wait for a slot, so time to first token grows with
the calls in flight. Output tokens per second saturate at `max_batch / step(max_batch)`; with `thrash > 0`
they fall again once calls queue (the goodput collapse of a server that preempts and recomputes when its KV
cache runs out): every full batch of waiting calls lengthens every step by the fraction `thrash`.

One `Scheduler` drives both the live engine (mocks/engine.py, real time) and `simulate`/`closed_loop`
(virtual time: the expected curves a report plots, and the model `ragload probe-upstream` fits), so the
numbers agree by construction.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from mocks.latency import LatencySpec


@dataclass(frozen=True, slots=True)
class BatchModel:
    """The engine's parameters; times in seconds."""

    max_batch: int
    step_base: float
    step_per_seq: float
    prefill_per_token: float
    thrash: float = 0.0

    def step_time(self, running: int, prefill_tokens: int, waiting: int) -> float:
        work = self.step_base + self.step_per_seq * running + self.prefill_per_token * prefill_tokens
        return work * (1.0 + self.thrash * waiting / self.max_batch) if waiting and self.thrash else work


class Sequence:
    """One call in the engine. `waiter` and `stream` are for the live engine's handlers only."""

    __slots__ = (
        "prompt_tokens",
        "output_tokens",
        "arrived",
        "produced",
        "first_token_at",
        "finished_at",
        "stream",
        "waiter",
    )

    def __init__(self, prompt_tokens: int, output_tokens: int, arrived: float, stream: bool = False) -> None:
        self.prompt_tokens = prompt_tokens
        self.output_tokens = max(1, output_tokens)
        self.arrived = arrived
        self.produced = 0
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.stream = stream
        self.waiter: Any = None


class Scheduler:
    """Running and waiting calls, and the two halves of a step: `start_step` (admit, say how long it lasts)
    and `finish_step` (hand out one token each). Counts steps and tokens for the stats."""

    def __init__(self, model: BatchModel) -> None:
        self.model = model
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self.steps = 0
        self.prompt_tokens = 0  # prefilled
        self.output_tokens = 0  # generated

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def submit(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def abort(self, seq: Sequence) -> None:
        """Take a call out (its client left, or it was answered with an error)."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def start_step(self) -> float:
        """Admit waiting calls into free slots; the step's duration in seconds."""
        model, running, waiting = self.model, self.running, self.waiting
        prefill = 0
        free = model.max_batch - len(running)
        while free > 0 and waiting:
            seq = waiting.popleft()
            running.append(seq)
            prefill += seq.prompt_tokens
            free -= 1
        self.prompt_tokens += prefill
        return model.step_time(len(running), prefill, len(waiting))

    def finish_step(self, at: float) -> list[Sequence]:
        """One token for every running call at time `at`; returns the calls to wake: finished ones, and
        streaming ones that got a token."""
        wake: list[Sequence] = []
        still: list[Sequence] = []
        for seq in self.running:
            seq.produced += 1
            if seq.first_token_at is None:
                seq.first_token_at = at
            if seq.produced >= seq.output_tokens:
                seq.finished_at = at
                wake.append(seq)
            else:
                still.append(seq)
                if seq.stream:
                    wake.append(seq)
        self.output_tokens += len(self.running)
        self.running = still
        self.steps += 1
        return wake


# ---- virtual time ----------------------------------------------------------------------------------------


def _drive(
    model: BatchModel, pending: list[tuple[float, int, Sequence]], on_finish: Callable[[Sequence], None]
) -> None:
    """Run the scheduler in virtual time over a heap of (arrival, tie, call) until every call is done.

    Like the live engine: an idle engine starts a step the moment a call arrives; a busy one admits the calls
    that arrived before the step boundary (a call arriving exactly at the boundary, as a closed-loop client's
    next call does, waits for the following one). `on_finish` may push further arrivals."""
    scheduler = Scheduler(model)
    t = 0.0
    while pending or not scheduler.idle:
        if scheduler.idle:
            t = max(t, pending[0][0])
            while pending and pending[0][0] <= t:
                scheduler.submit(heapq.heappop(pending)[2])
        else:
            while pending and pending[0][0] < t:
                scheduler.submit(heapq.heappop(pending)[2])
        end = t + scheduler.start_step()
        for seq in scheduler.finish_step(end):
            if seq.finished_at is not None:
                on_finish(seq)
        t = end


def simulate(model: BatchModel, calls: Iterable[tuple[float, int, int]]) -> list[tuple[float, float]]:
    """(first token, finish) times of calls given as (arrival time, prompt tokens, output tokens)."""
    seqs = [Sequence(prompt, output, arrived) for arrived, prompt, output in calls]
    pending = [(seq.arrived, index, seq) for index, seq in enumerate(seqs)]
    heapq.heapify(pending)
    _drive(model, pending, lambda seq: None)
    return [(float(seq.first_token_at or 0.0), float(seq.finished_at or 0.0)) for seq in seqs]


@dataclass(frozen=True)
class LoadPoint:
    """Expected behaviour at one concurrency (closed loop, no think time); times in seconds."""

    concurrency: int
    ttft_s: float  # mean, from the client's send (overhead included) to the first token
    latency_s: float  # mean, from the client's send to the last token
    calls_per_s: float
    output_tokens_per_s: float
    prompt_tokens_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


WARMUP_CALLS = 3  # per client, left out of the averages (the start-up transient)
MEASURED_CALLS = 10  # per client


def unloaded_latency(
    model: BatchModel, prompt_tokens: int, output_tokens: int, overhead_s: float = 0.0
) -> float:
    """One call alone: overhead, the step that admits it, then a decode step per further token."""
    first = model.step_time(1, prompt_tokens, 0)
    return overhead_s + first + (max(1, output_tokens) - 1) * model.step_time(1, 0, 0)


def closed_loop(
    model: BatchModel,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    overhead: LatencySpec | float = 0.0,
    seed: int = 0,
    warmup_calls: int = WARMUP_CALLS,
    measured_calls: int = MEASURED_CALLS,
) -> LoadPoint:
    """`concurrency` clients, each sending its next call the moment the previous one ends; every call spends
    `overhead` (the mock's `chat_latency` under the capacity model: network, gateway; a spec is sampled with
    a generator seeded by `seed`, so the result is deterministic) before the engine.

    The clients start spread evenly over one unloaded call, as independent clients would be: started in the
    same instant, equal calls would stay in lock-step cohorts whose prefills all land in one step. Each client
    makes `warmup_calls` (left out of the averages: the start-up transient) then `measured_calls`."""
    total = warmup_calls + measured_calls
    tie = itertools.count()
    sent: dict[int, float] = {}
    done: dict[int, int] = {}
    client_of: dict[int, int] = {}
    ttfts: list[float] = []
    latencies: list[float] = []
    pending: list[tuple[float, int, Sequence]] = []

    rng = random.Random(seed)
    spec = overhead if isinstance(overhead, LatencySpec) else LatencySpec("const", overhead)

    def send(client: int, at: float) -> None:
        seq = Sequence(prompt_tokens, output_tokens, at + spec.sample(rng))
        sent[id(seq)] = at
        client_of[id(seq)] = client
        heapq.heappush(pending, (seq.arrived, next(tie), seq))

    def on_finish(seq: Sequence) -> None:
        client = client_of.pop(id(seq))
        started = sent.pop(id(seq))
        done[client] = done.get(client, 0) + 1
        if done[client] > warmup_calls:
            ttfts.append(float(seq.first_token_at or 0.0) - started)
            latencies.append(float(seq.finished_at or 0.0) - started)
        if done[client] < total:
            send(client, float(seq.finished_at or 0.0))

    spread = unloaded_latency(model, prompt_tokens, output_tokens, spec.mean) / concurrency
    for client in range(concurrency):
        send(client, client * spread)
    _drive(model, pending, on_finish)
    latency = sum(latencies) / len(latencies)
    calls_per_s = concurrency / latency  # Little's law for a closed loop without think time
    return LoadPoint(
        concurrency=concurrency,
        ttft_s=sum(ttfts) / len(ttfts),
        latency_s=latency,
        calls_per_s=calls_per_s,
        output_tokens_per_s=calls_per_s * max(1, output_tokens),
        prompt_tokens_per_s=calls_per_s * prompt_tokens,
    )


def expected_curve(
    model: BatchModel,
    concurrencies: Iterable[int],
    prompt_tokens: int,
    output_tokens: int,
    overhead: LatencySpec | float = 0.0,
) -> list[LoadPoint]:
    """The model's time to first token, latency and throughput at each concurrency (pure math, no I/O)."""
    return [closed_loop(model, c, prompt_tokens, output_tokens, overhead) for c in concurrencies]
