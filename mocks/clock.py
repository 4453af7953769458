"""The mock's clock: every latency is a deadline on one monotonic clock, reached with `sleep_until`.

Sleeping a relative `d` after the previous event lets every timer overshoot add up: uvloop rounds timers to
whole milliseconds and fires them after the loop's other work, so 32 tokens paced by `sleep(1 / rate)` each
drifted +11 %. A deadline computed from the start of the call (or of the engine's clock) is reached as
closely as one timer allows, and a late wake-up shortens the next wait instead of pushing every later event
back. `now` is `time.perf_counter` (sub-microsecond), not `loop.time()`, which uvloop keeps in milliseconds.
"""

from __future__ import annotations

import asyncio
import time

now = time.perf_counter


async def sleep_until(deadline: float) -> None:
    """Return at `deadline` (a `now()` value) or as soon after as the loop allows; yields once if past."""
    delay = deadline - now()
    await asyncio.sleep(delay if delay > 0 else 0)
