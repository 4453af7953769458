"""Autoscaling the workers on queue length: a pure policy and a small loop that applies it.

Policy (`decide`): the workers needed are the busy ones plus one per `backlog_per_worker` waiting jobs,
within [min, max]. Scaling **up** is fast: straight to the need, at most once per `up_cooldown_s`.
Scaling **down** is slow and gradual, the usual hysteresis against flapping (as Kubernetes' HPA
stabilization window): only after the need has stayed below the current count for `down_stabilization_s`
without a break, only `down_step` workers at a time, and at most once per `down_cooldown_s`. A load that
comes and goes every few seconds therefore raises the count once and keeps it. The need never drops below
the busy workers, so a scale-down never asks for a busy worker to go (and the launcher stops workers
gracefully anyway: RQ's warm shutdown finishes the current job).

deploy/k8s/keda-scaledobject.yaml mirrors this policy for Kubernetes: one Prometheus trigger computing
`needed_workers` from the API's gauges, HPA behaviour for the cooldowns and the stabilization window.
KEDA has no `current` to cap stale busy workers with (see `decide`): a pod killed mid-job counts as busy
until its RQ worker registration expires.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalePolicy:
    min_workers: int
    max_workers: int
    backlog_per_worker: int = 4  # waiting jobs one more worker is worth (the `/ 4` of KEDA's query)
    up_cooldown_s: float = 2.0  # a new worker needs a second or two to start: do not stack decisions
    down_stabilization_s: float = 15.0  # the need must stay lower this long before any worker goes
    down_cooldown_s: float = 5.0  # between two scale-downs
    down_step: int = 1  # workers removed per scale-down

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers or self.max_workers < 1:
            raise ValueError(f"need 0 <= min <= max and max >= 1, got {self.min_workers}:{self.max_workers}")
        if self.backlog_per_worker < 1 or self.down_step < 1:
            raise ValueError("backlog_per_worker and down_step must be >= 1")


@dataclass(frozen=True)
class ScaleState:
    """What the policy remembers between two calls (start with `ScaleState()`)."""

    last_change_at: float | None = None  # when the count last changed (monotonic seconds)
    low_since: float | None = None  # since when the need has been below the current count


@dataclass(frozen=True)
class Decision:
    workers: int
    state: ScaleState
    reason: str


def needed_workers(queue_depth: int, busy_workers: int, policy: ScalePolicy) -> int:
    """Busy workers plus one per `backlog_per_worker` waiting jobs, within the bounds."""
    need = max(0, busy_workers) + math.ceil(max(0, queue_depth) / policy.backlog_per_worker)
    return min(policy.max_workers, max(policy.min_workers, need))


def decide(
    queue_depth: int, busy_workers: int, current: int, policy: ScalePolicy, state: ScaleState, now: float
) -> Decision:
    """The worker count to have now, and the state to pass to the next call. Pure: no clock, no I/O."""
    if current < policy.min_workers or current > policy.max_workers:
        target = min(policy.max_workers, max(policy.min_workers, current))
        return Decision(target, ScaleState(last_change_at=now), "out of bounds")
    # A worker SIGKILLed while busy stays registered (and "busy") in Valkey for a while: trust `current`.
    need = needed_workers(queue_depth, min(busy_workers, current), policy)
    since_change = math.inf if state.last_change_at is None else now - state.last_change_at
    if need > current:
        if since_change < policy.up_cooldown_s:
            return Decision(current, replace(state, low_since=None), "up: cooling down")
        return Decision(
            need, ScaleState(last_change_at=now), f"up: {queue_depth} waiting, {busy_workers} busy"
        )
    if need == current:
        return Decision(current, replace(state, low_since=None), "steady")
    low_since = now if state.low_since is None else state.low_since
    if now - low_since < policy.down_stabilization_s:
        return Decision(current, replace(state, low_since=low_since), "down: stabilizing")
    if since_change < policy.down_cooldown_s:
        return Decision(current, replace(state, low_since=low_since), "down: cooling down")
    target = max(need, current - policy.down_step)
    # Still above the need after this step: keep counting the low period, the next step waits for cooldown.
    next_low = low_since if target > need else None
    return Decision(target, ScaleState(last_change_at=now, low_since=next_low), f"down: need {need}")


def parse_bounds(text: str) -> tuple[int, int]:
    """`MIN:MAX` (for `ragload up --autoscale MIN:MAX`)."""
    low, sep, high = text.partition(":")
    try:
        bounds = int(low), int(high)
    except ValueError:
        bounds = (-1, -1)
    if not sep or not 0 <= bounds[0] <= bounds[1] or bounds[1] < 1:
        raise ValueError(f"expected MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return bounds


@dataclass(frozen=True)
class Load:
    queue_depth: int
    busy_workers: int


class Autoscaler:
    """Every `interval_s`: read the load, decide, and call `scale_to(n)` when the count should change.

    `read_load` and `current_workers` are the caller's (e.g. the broker snapshot and the stack's own list
    of worker processes: a SIGKILLed worker stays registered in Valkey for minutes, a process list does
    not lie). A failing read (broker down) skips the tick; the loop keeps going.
    """

    def __init__(
        self,
        policy: ScalePolicy,
        read_load: Callable[[], Load],
        current_workers: Callable[[], int],
        scale_to: Callable[[int], None],
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.read_load = read_load
        self.current_workers = current_workers
        self.scale_to = scale_to
        self.interval_s = interval_s
        self.clock = clock
        self.state = ScaleState()
        self.last_decision: Decision | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> Decision:
        load = self.read_load()
        current = self.current_workers()
        decision = decide(load.queue_depth, load.busy_workers, current, self.policy, self.state, self.clock())
        self.state = decision.state
        self.last_decision = decision
        if decision.workers != current:
            log.info("autoscale %d -> %d workers (%s)", current, decision.workers, decision.reason)
            self.scale_to(decision.workers)
        return decision

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a broker outage or a failed start must not end autoscaling
                log.exception("autoscale tick failed")
            self._stop.wait(self.interval_s)

    def start(self) -> Autoscaler:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="autoscaler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
