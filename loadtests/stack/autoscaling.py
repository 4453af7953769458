"""`StackAutoscaling`: system/autoscale.py's policy applied to an `EmbeddedStack`'s workers, from a thread.

Used by `ragload up --autoscale MIN:MAX` and by the fault runs' autoscaling scenario. The stack's worker list
is guarded by a lock; a worker the autoscaler removes leaves the list before it is stopped, so the
supervisor never sees it as dead and never brings it back, and a respawn keeps the count the autoscaler set.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from loadtests.stack.embedded_stack import EmbeddedStack
from system.autoscale import Autoscaler, Load, ScalePolicy

AUTOSCALE_INTERVAL_S = 1.0  # one broker read a second: the policy's cooldowns are seconds long
BROKER_TIMEOUT_S = 5.0  # a hung Valkey must not freeze the autoscaler's thread (a failed tick is skipped)


def policy_for(min_workers: int, max_workers: int) -> ScalePolicy:
    """The policy `ragload up --autoscale MIN:MAX` applies (system/autoscale.py's default timings)."""
    return ScalePolicy(min_workers=min_workers, max_workers=max_workers)


class StackAutoscaling:
    """system/autoscale.py's `Autoscaler` applied to an `EmbeddedStack`'s workers, from a thread.

    Load comes from Valkey (`broker_snapshot`); the current count from the stack's own worker list (a
    SIGKILLed worker stays registered in Valkey for minutes; the list does not lie). Each change is
    announced in one line, after the stack has scaled. `stop()` it before stopping the stack.
    """

    def __init__(
        self,
        stack: EmbeddedStack,
        policy: ScalePolicy,
        *,
        interval_s: float = AUTOSCALE_INTERVAL_S,
        announce: Callable[[str], None] = lambda line: print(line, flush=True),
    ) -> None:
        self.stack = stack
        self.announce = announce
        self.queue_name = stack.queue_name
        self.connection = redis.Redis.from_url(
            stack.urls["redis"], socket_timeout=BROKER_TIMEOUT_S, socket_connect_timeout=BROKER_TIMEOUT_S
        )
        self.last_load = Load(queue_depth=0, busy_workers=0)
        self.autoscaler = Autoscaler(
            policy, self._read_load, self._current_workers, self._scale_to, interval_s=interval_s
        )

    def _read_load(self) -> Load:
        from system.metrics import broker_snapshot

        snapshot = broker_snapshot(self.connection, self.queue_name)
        self.last_load = Load(queue_depth=snapshot.queue_depth, busy_workers=snapshot.busy_workers)
        return self.last_load

    def _current_workers(self) -> int:
        return len(self.stack.worker_processes())

    def _scale_to(self, workers: int) -> None:
        before, load = self._current_workers(), self.last_load
        self.stack.scale_workers(workers)
        self.announce(
            f"autoscale: workers {before} -> {workers} "
            f"(queue depth {load.queue_depth}, busy {load.busy_workers})"
        )

    def start(self) -> StackAutoscaling:
        self.autoscaler.start()
        return self

    def stop(self) -> None:
        self.autoscaler.stop()
        self.connection.close()

    def __enter__(self) -> StackAutoscaling:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
