"""CellShape: the Locust shape of one sweep cell, built from loadtests/locust/shapes.py and the RAGLOAD_*
settings.

Closed loop: RAGLOAD_USERS chat users for RAGLOAD_DURATION_S. Open loop: a pool of users sized for
RAGLOAD_RATE arrivals per second at the deadline (shapes.pool_size), for RAGLOAD_DURATION_S; the arrival
times themselves come from each process's ArrivalSchedule (loadtests/locust/user_support.py). Plus the one
probe. With RAGLOAD_GO_FILE the shape holds every user back until that file exists, and counts time from then.
"""

from __future__ import annotations

import locust  # isort: split  (first: it monkey-patches the process with gevent)

from loadtests.locust.shapes import PoissonArrivals, Tick, UserSteps
from loadtests.locust.user_support import settings, wait_for_go

PROBE_USERS = 1  # ProbeUser.fixed_count


def cell_shape() -> UserSteps | PoissonArrivals:
    s = settings()
    if s.load == "open":
        return PoissonArrivals.for_deadline(s.rate, s.duration_s, s.deadline_s, s.seed)
    return UserSteps.constant(s.users, s.duration_s)


class CellShape(locust.LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.shape = cell_shape()
        self.go_at: float | None = None

    def tick(self) -> Tick:
        if self.go_at is None:
            wait_for_go()  # only this greenlet waits: Locust's shape worker, before any user exists
            self.go_at = self.get_run_time()
        current = self.shape.tick(self.get_run_time() - self.go_at)
        if current is None:
            return None
        users, spawn_rate = current
        return users + PROBE_USERS, spawn_rate
