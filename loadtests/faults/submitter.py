"""The submitter of a fault run: POST /chat with Poisson arrivals (open loop), every answer accounted for.

No Locust here: the point is to know every accepted job id (for the audit) and every rejection by cause
(HTTP status, with or without Retry-After; `connect` when the API could not be reached, `timeout` when it
did not answer). Arrivals follow the scenario's rate steps; the gap drawn at a step boundary is redrawn at
the new rate (Poisson arrivals are memoryless, so this is exact). Submitting stops once `jobs` are accepted
(no request is sent that could overshoot it) or after `duration_s`.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from loadtests.faults.profile import LoadStep

SUBMIT_TIMEOUT_S = 10.0  # the API answers a submit in milliseconds, or 503 within its 2 s broker timeout
MAX_IN_FLIGHT = 256  # past this an arrival waits for a free slot (the API is then the bottleneck anyway)
QUESTIONS = (
    "How do I serialize an object to a JSON formatted string?",
    "How can I read rows from a CSV file?",
    "What does pickle do with class instances?",
    "How do I match a regular expression at the start of a string?",
    "How do I join two filesystem paths?",
    "How do I parse command line arguments?",
)


@dataclass(frozen=True)
class Answer:
    t: float  # seconds since the scenario started, when the answer (or the error) arrived
    status: str  # "202", "503", …, "connect", "timeout", "transport"
    retry_after: bool
    job_id: str | None = None


@dataclass
class SubmitTally:
    """Counts the sampler reads while the load runs (one writer: the event loop) and the full answer log."""

    offered: int = 0
    accepted: int = 0
    rejected: int = 0
    in_flight: int = 0
    accepted_jobs: list[tuple[str, float]] = field(default_factory=list)  # (job id, accepted t)
    rejections: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.in_flight -= 1
            if answer.job_id is not None:
                self.accepted += 1
                self.accepted_jobs.append((answer.job_id, answer.t))
            else:
                self.rejected += 1
                self.rejections.append(answer)

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.offered, self.accepted, self.rejected

    def rejected_by_cause(self) -> dict[str, int]:
        return dict(Counter(answer.status for answer in self.rejections))


def rate_at(steps: Sequence[LoadStep], t: float) -> float:
    current = steps[0].rate
    for step in steps:
        if step.at_s <= t:
            current = step.rate
    return current


def next_arrival(steps: Sequence[LoadStep], t: float, rng: random.Random) -> float:
    """The next Poisson arrival after `t` under the piecewise-constant rate of `steps`."""
    while True:
        candidate = t + rng.expovariate(rate_at(steps, t))
        boundary = next((step.at_s for step in steps if t < step.at_s), None)
        if boundary is None or candidate < boundary:
            return candidate
        t = boundary  # memoryless: start over at the new rate


class Submitter:
    def __init__(
        self,
        api_url: str,
        steps: Sequence[LoadStep],
        *,
        jobs: int | None,
        duration_s: float | None,
        clock: Callable[[], float],
        rng: random.Random,
        on_step: Callable[[LoadStep], None] = lambda step: None,
    ) -> None:
        self.api_url = api_url
        self.steps = list(steps)
        self.jobs = jobs
        self.duration_s = duration_s
        self.clock = clock  # seconds since the scenario started
        self.rng = rng
        self.on_step = on_step
        self.tally = SubmitTally()

    def run(self) -> SubmitTally:
        asyncio.run(self._run())
        return self.tally

    def _done(self) -> bool:
        if self.duration_s is not None and self.clock() >= self.duration_s:
            return True
        return self.jobs is not None and self.tally.accepted >= self.jobs

    def _room(self) -> bool:
        """False while the requests in flight could already bring the accepted count to `jobs`."""
        with self.tally.lock:
            return self.jobs is None or self.tally.accepted + self.tally.in_flight < self.jobs

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        announced = 0
        async with httpx.AsyncClient(
            base_url=self.api_url, limits=limits, timeout=SUBMIT_TIMEOUT_S
        ) as client:
            t = 0.0
            while True:
                t = next_arrival(self.steps, t, self.rng)
                while announced < len(self.steps) and self.steps[announced].at_s <= min(t, self.clock()):
                    self.on_step(self.steps[announced])
                    announced += 1
                end = self.duration_s if self.duration_s is not None else t
                delay = min(t, end) - self.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                while not self._room() and not self._done():
                    await asyncio.sleep(0.01)
                if self._done():
                    break
                await slots.acquire()
                with self.tally.lock:
                    self.tally.offered += 1
                    self.tally.in_flight += 1
                task = asyncio.create_task(self._submit(client, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)

    async def _submit(self, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
        body = {"query": self.rng.choice(QUESTIONS), "top_k": 4}
        try:
            response = await client.post("/chat", json=body)
        except httpx.ConnectError:
            answer = Answer(self.clock(), "connect", False)
        except httpx.TimeoutException:
            answer = Answer(self.clock(), "timeout", False)
        except httpx.TransportError:
            answer = Answer(self.clock(), "transport", False)
        else:
            job_id = response.json().get("job_id") if response.status_code == 202 else None
            retry_after = "retry-after" in response.headers
            answer = Answer(self.clock(), str(response.status_code), retry_after, job_id)
        finally:
            slots.release()
        self.tally.record(answer)
