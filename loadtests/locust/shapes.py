"""Load shapes as plain data with a tiny `tick()`; no Locust import, so tests and the sweep can use them.

- `UserSteps`: closed loop, a fixed number of users per step (rising steps for a curve, one step per cell).
- `PoissonArrivals`: open loop, requests arrive as a Poisson process at `rate` per second, whatever the
  response times. A pool of users is held ready; each takes the next arrival time from one shared
  `ArrivalSchedule`, sleeps until it and sends. A slow response only ties up one user of the pool, never
  the schedule; an arrival that finds no free user is started late, and that lateness is recorded (the
  pool was exhausted), not hidden.

`tick(run_time)` returns `(users, spawn_rate)` while the shape runs and None when it is over, as Locust's
`LoadTestShape.tick()` does (loadtests/locust/locust_shapes.py adapts these to Locust).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

Tick = tuple[int, float] | None

POOL_HEADROOM = 1.5  # users held per request expected in flight at the deadline, for bursts of arrivals
POOL_MIN_SPARE = 8  # a few spare users even at very low rates
LATE_TOLERANCE_S = 0.05  # gevent's timer resolution and scheduling jitter are well below this


@dataclass(frozen=True)
class Step:
    duration_s: float
    users: int
    spawn_rate: float

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.users < 0 or self.spawn_rate <= 0:
            raise ValueError(f"a step needs duration_s > 0, users >= 0 and spawn_rate > 0, got {self}")


@dataclass(frozen=True)
class UserSteps:
    """Closed loop: `steps` run one after the other; then the shape is over."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("UserSteps needs at least one step")

    @classmethod
    def constant(cls, users: int, duration_s: float, spawn_rate: float | None = None) -> UserSteps:
        return cls((Step(duration_s, users, spawn_rate or max(float(users), 1.0)),))

    @classmethod
    def rising(cls, start: int, stop: int, step: int, step_s: float) -> UserSteps:
        """start, start+step, … up to stop users, each held for `step_s` seconds (spawned within 1 s)."""
        if step <= 0 or start <= 0 or stop < start:
            raise ValueError("rising steps need 0 < start <= stop and step > 0")
        return cls(tuple(Step(step_s, n, float(max(n, 1))) for n in range(start, stop + 1, step)))

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.steps)

    def tick(self, run_time: float) -> Tick:
        elapsed = 0.0
        for step in self.steps:
            elapsed += step.duration_s
            if run_time < elapsed:
                return step.users, step.spawn_rate
        return None


def pool_size(rate: float, deadline_s: float) -> int:
    """Users enough that arrivals never wait for one: every request ends by the deadline, so at most
    about rate × deadline are in flight at once (Little's law at the worst latency)."""
    return math.ceil(rate * deadline_s * POOL_HEADROOM) + POOL_MIN_SPARE


@dataclass(frozen=True)
class PoissonArrivals:
    """Open loop: `rate` arrivals per second for `duration_s`, served by a pool of `pool` users."""

    rate: float
    duration_s: float
    pool: int
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0 or self.pool <= 0:
            raise ValueError(f"PoissonArrivals needs rate, duration_s and pool above 0, got {self}")

    @classmethod
    def for_deadline(
        cls, rate: float, duration_s: float, deadline_s: float, seed: int | None = None
    ) -> PoissonArrivals:
        return cls(rate, duration_s, pool_size(rate, deadline_s), seed)

    def tick(self, run_time: float) -> Tick:
        """The whole pool at once (spawned within about a second), for the shape's duration."""
        return (self.pool, float(self.pool)) if run_time < self.duration_s else None

    def offsets(self) -> Iterator[float]:
        """Arrival times in seconds from the start: exponential inter-arrivals with mean 1/rate."""
        rng = random.Random(self.seed)
        t = rng.expovariate(self.rate)
        while t < self.duration_s:
            yield t
            t += rng.expovariate(self.rate)


class Arrival(NamedTuple):
    due: float  # when the arrival was due (the schedule's clock)
    lag: float  # how late it was claimed, in seconds (0: a user was free in time)
    position: int  # its place in the schedule, 0 for the first: names the request (the same in every cell)


@dataclass
class ArrivalSchedule:
    """The arrival times shared by all users of one generator process (gevent is cooperative: no lock).

    `claim()` hands out the next arrival (absolute time on the same clock as `clock`, lag, index), or None
    once the arrivals are over. A claim made after its arrival time means no user was free when it was due.
    """

    arrivals: PoissonArrivals
    start: float
    clock: Callable[[], float]
    late: int = 0
    max_lag_s: float = 0.0
    claimed: int = 0
    _offsets: Iterator[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = self.arrivals.offsets()

    def claim(self) -> Arrival | None:
        """The next arrival, or None when they are over."""
        offset = next(self._offsets, None)
        if offset is None:
            return None
        due = self.start + offset
        lag = max(0.0, self.clock() - due)
        if lag > LATE_TOLERANCE_S:
            self.late += 1
            self.max_lag_s = max(self.max_lag_s, lag)
        self.claimed += 1
        return Arrival(due, lag, self.claimed - 1)
