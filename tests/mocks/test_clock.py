"""The mock keeps time: deadlines are absolute, so a timer that always wakes late does not push later events.

A virtual clock stands in for the real one, and every sleep overshoots it by 2 ms (uvloop's timers overshoot
by up to about a millisecond, more on a busy machine). No wall-clock bound: the test is of the schedule.
"""

from __future__ import annotations

import asyncio
import heapq
import types
from collections.abc import AsyncIterator

import pytest

from mocks import app as mock_app
from mocks import clock, engine
from mocks.capacity import BatchModel, Sequence, simulate

OVERSHOOT_S = 0.002


class VirtualClock:
    """Time moves only when every task waits on it: then to the earliest wake-up, which comes OVERSHOOT_S
    after the deadline asked for (as a real timer's does)."""

    def __init__(self) -> None:
        self.t = 100.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self.t + max(0.0, delay) + OVERSHOOT_S, self._count, future))
        await future

    async def drive(self) -> None:
        while True:
            for _ in range(20):  # let every runnable task run until it waits again
                await asyncio.sleep(0)
            if self._sleepers:
                wake, _, future = heapq.heappop(self._sleepers)
                self.t = max(self.t, wake)
                future.set_result(None)


@pytest.fixture
async def virtual(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VirtualClock]:
    fake = VirtualClock()
    monkeypatch.setattr(clock, "now", fake.now)
    monkeypatch.setattr(clock, "asyncio", types.SimpleNamespace(sleep=fake.sleep))
    driver = asyncio.get_running_loop().create_task(fake.drive())
    yield fake
    driver.cancel()


async def test_streamed_tokens_keep_to_their_absolute_schedule(virtual: VirtualClock) -> None:
    start = virtual.now()
    ttft, rate, words = 0.050, 200.0, 32
    due_at = []
    async for produced in mock_app._paced(start + ttft, rate, words):
        due_at.append((produced, virtual.now() - start))
    assert [produced for produced, _ in due_at] == list(range(1, words + 1))
    for produced, at in due_at:
        scheduled = ttft + (produced - 1) / rate
        assert at == pytest.approx(scheduled + OVERSHOOT_S)  # late by one overshoot, never by the sum
    # The old relative pacing (sleep 1/rate after each token) would have ended 31 overshoots (62 ms) late.


async def test_engine_steps_keep_to_the_schedule_a_simulation_computes(virtual: VirtualClock) -> None:
    model = BatchModel(max_batch=2, step_base=0.010, step_per_seq=0.001, prefill_per_token=0.0001, thrash=0.2)
    live = engine.Engine(model)
    start = virtual.now()
    calls = [(0.0, 10, 5), (0.0, 30, 3), (0.004, 20, 4), (0.030, 5, 2)]
    sequences = []
    for arrival, prompt, output in calls:
        if arrival > virtual.now() - start:
            # A handler's own timer: it too wakes late, so the call arrives mid-step either way (the
            # arrivals here are 2 ms clear of every step boundary of the simulation).
            await clock.sleep_until(start + arrival)
        seq = Sequence(prompt, output, start + arrival)
        live.submit(seq)
        sequences.append(seq)
    while any(seq.finished_at is None for seq in sequences):
        await asyncio.sleep(0)
    expected = simulate(model, calls)
    for seq, (first, last) in zip(sequences, expected, strict=True):
        assert seq.first_token_at is not None and seq.finished_at is not None
        assert seq.first_token_at - start == pytest.approx(first)
        assert seq.finished_at - start == pytest.approx(last)
