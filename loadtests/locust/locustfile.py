"""All scenarios for the Locust web UI (`make locust-ui`) and compose's Locust services.

Each user class targets its own service unless --host is given: QueuedChatUser and ProbeUser the queued
API (RAGLOAD_API_URL, default :8000), SyncChatUser the baseline (RAGLOAD_BASELINE_URL, default :8001).
With `--class-picker` the UI lets you pick the users and a shape: "Default" (the UI's user count),
RisingUsers (steps of RAGLOAD_STEP_USERS more users every RAGLOAD_STEP_S seconds). Open loop: start the UI
with RAGLOAD_LOAD=open RAGLOAD_RATE=R; each user then sends at the shared Poisson arrival times.
"""

from __future__ import annotations

import os

import locust  # isort: split  (first: it monkey-patches the process with gevent)

from loadtests.locust.probe_user import ProbeUser
from loadtests.locust.queued_chat_user import QueuedChatUser
from loadtests.locust.shapes import Tick, UserSteps
from loadtests.locust.sync_chat_user import SyncChatUser

__all__ = ["ProbeUser", "QueuedChatUser", "RisingUsers", "SyncChatUser"]


class RisingUsers(locust.LoadTestShape):
    """Closed loop, rising: RAGLOAD_STEP_USERS, 2×, … up to RAGLOAD_MAX_USERS, RAGLOAD_STEP_S s each."""

    def __init__(self) -> None:
        super().__init__()
        step = int(os.environ.get("RAGLOAD_STEP_USERS", "5"))
        self.steps = UserSteps.rising(
            start=step,
            stop=int(os.environ.get("RAGLOAD_MAX_USERS", "50")),
            step=step,
            step_s=float(os.environ.get("RAGLOAD_STEP_S", "30")),
        )

    def tick(self) -> Tick:
        return self.steps.tick(self.get_run_time())
