"""The live engine: the capacity model's scheduler (mocks/capacity.py) run against the mock's clock.

One asyncio task runs steps while there is work and ends when there is none (the next call starts a new one).
Step k ends at an absolute time, the end of step k-1 plus step k's duration (mocks/clock.py): a late
wake-up shortens the next step's wait instead of shifting all later ones. A step that starts an idle engine
begins when its first call arrived. Handlers `submit` a call and await `progress`, which returns once the
call has new tokens (streaming) or has finished (non-streaming).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mocks import clock
from mocks.capacity import BatchModel, Scheduler, Sequence


class Engine:
    def __init__(self, model: BatchModel) -> None:
        self.scheduler = Scheduler(model)
        self._task: asyncio.Task[None] | None = None
        self._step_end = 0.0

    def set_model(self, model: BatchModel) -> None:
        """Takes effect from the next step; calls already running keep their slot."""
        self.scheduler.model = model

    def submit(self, seq: Sequence) -> None:
        self.scheduler.submit(seq)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def abort(self, seq: Sequence) -> None:
        if seq.finished_at is None:
            self.scheduler.abort(seq)

    async def progress(self, seq: Sequence) -> None:
        """Wait until `seq` has tokens it had not when called (streaming) or has finished."""
        seq.waiter = asyncio.get_running_loop().create_future()
        try:
            await seq.waiter
        finally:
            seq.waiter = None

    async def _run(self) -> None:
        scheduler = self.scheduler
        # An idle engine starts its first step when the call that woke it arrived (a scheduled time).
        t = max(self._step_end, scheduler.waiting[0].arrived)
        try:
            while not scheduler.idle:
                t += scheduler.start_step()
                self._step_end = t
                await clock.sleep_until(t)
                for seq in scheduler.finish_step(t):
                    waiter = seq.waiter
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
        finally:
            self._task = None

    def stats(self) -> dict[str, Any]:
        scheduler = self.scheduler
        return {
            "running": len(scheduler.running),
            "waiting": len(scheduler.waiting),
            "steps": scheduler.steps,
            "max_batch": scheduler.model.max_batch,
        }
