"""`ragload bench --profile faults`: a fault profile's scenarios against the embedded stack, each audited.

Per scenario: switch the stack to the scenario's queue engine (RQ, or SAQ with its concurrency), scale the
workers, reset the queue, the shared breaker and the mock; then at once the
submitter (Poisson POST /chat, every answer kept), the fault events on their timeline, the supervisor that
respawns dead workers, autoscaling if asked, and the timeline sampler (0.5 s). When the load ends the
faults stop and the drain waits until every accepted job is finished or dead-lettered (or drain_limit_s),
then every accepted job id is audited in Valkey, read through its engine (loadtests/faults/engine_jobs.py).
Files: docs/architecture.md, "A fault run folder".
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from loadtests.faults.audit import Audit, audit_jobs, write_jobs
from loadtests.faults.engine_jobs import EngineJobs, engine_jobs
from loadtests.faults.events import (
    EventLog,
    EventPlayer,
    StackFaults,
    WorkerSupervisor,
    plan,
    put_mock_config,
)
from loadtests.faults.kills import KillWatch, kill_to_restart, write_kills
from loadtests.faults.profile import FaultProfile, LlmOutage, Scenario, load_fault_profile
from loadtests.faults.submitter import Answer, SubmitTally, Submitter
from loadtests.faults.timeline import (
    BrokerReader,
    JobTracker,
    TimelineSampler,
    broker_connection,
    write_timeline,
)
from loadtests.stack.autoscaling import StackAutoscaling, policy_for
from loadtests.stack.embedded_stack import EmbeddedStack, StackError
from loadtests.stack.services import free_port
from loadtests.sweep.profile import ProfileError
from loadtests.sweep.run_folder import (
    git_revision,
    iso_now,
    machine_facts,
    new_run_dir,
    package_versions,
    write_json,
)
from system.rag.breaker import reset_shared_breaker
from system.settings import SystemSettings

FAULTS_FOLDER = "faults"
DRAIN_POLL_S = 0.5
PROGRESS_EVERY_ROWS = 10  # a progress line every 5 s of timeline
# Long enough that the audit still finds every job: a run lasts minutes, a finished job's result the same.
RESULT_TTL_S = 7200
DEFAULT_CONCURRENCY: int = SystemSettings.model_fields["worker_concurrency"].default  # RQ scenarios: unused


# ---- one scenario ------------------------------------------------------------------------------------------


class ScenarioRun:
    def __init__(
        self, stack: EmbeddedStack, profile: FaultProfile, scenario: Scenario, index: int, total: int
    ) -> None:
        self.stack = stack
        self.profile = profile
        self.scenario = scenario
        self.label = f"[{index}/{total}] {scenario.name}"
        self.seed = profile.seed * 1000 + index
        self.phase = "load"

    def prepare(self) -> None:
        stack, scenario = self.stack, self.scenario
        stack.respawn_dead_workers()
        stack.set_engine(scenario.engine, scenario.concurrency or stack.worker_concurrency)
        stack.scale_workers(scenario.initial_workers)
        live = {**self.profile.mock.live_config(), "error_rate": 0.0, "hang_rate": 0.0, "seed": self.seed}
        live |= {k: v for k, v in scenario.mock.model_dump().items() if v is not None}
        put_mock_config(stack.urls["mock"], live)
        stack.reset()
        with Redis.from_url(stack.urls["redis"]) as connection:
            reset_shared_breaker(connection)

    def run(self, folder: Path, overall_started: float) -> dict[str, Any]:
        self.prepare()
        folder.mkdir(parents=True, exist_ok=True)
        scenario = self.scenario
        write_json(folder / "scenario.json", scenario.resolved())
        started = time.monotonic()
        log = EventLog(started)
        rng = random.Random(self.seed)
        submitter = Submitter(
            self.stack.urls["api"],
            scenario.load,
            jobs=scenario.jobs,
            duration_s=scenario.duration_s,
            clock=log.now,
            rng=rng,
            on_step=lambda step: log.note("load_step", f"{step.rate:g} submits/s"),
        )
        connection = broker_connection(self.stack.urls["redis"])
        jobs = engine_jobs(scenario.engine, connection, self.stack.queue_name)
        reader = BrokerReader(connection, self.stack.queue_name, scenario.engine)
        kills = KillWatch(jobs, clock=log.now)
        faults = StackFaults(self.stack, random.Random(self.seed + 1), kills)
        player = EventPlayer(faults, plan(scenario), log)
        supervisor = WorkerSupervisor(self.stack, log, may_respawn=lambda: not player.broker_down)
        sampler = TimelineSampler(
            reader,
            JobTracker(jobs.statuses, lambda: submitter.tally.accepted_jobs),
            clock=log.now,
            submitted=submitter.tally.snapshot,
            live_workers=lambda: sum(w.alive() for w in self.stack.worker_processes()),
            metrics_dir=self.stack.env.get("PROMETHEUS_MULTIPROC_DIR"),
            on_row=lambda row: self._progress(row, overall_started),
        )
        autoscaling = self._autoscaling(log)
        sampler.start()
        supervisor.start()
        kills.start()
        try:
            player.start()
            try:
                tally = submitter.run()
            finally:
                player.finish()
            log.add("load_end", f"{tally.accepted} accepted, {tally.rejected} rejected")
            self.phase = "drain"
            drain_began = time.monotonic()
            drained = self._drain(sampler)
            drain_s = time.monotonic() - drain_began
            log.add("drain_end", "every accepted job ended" if drained else "drain limit reached")
        finally:
            if autoscaling is not None:
                autoscaling.stop()
            supervisor.stop()
            rows = sampler.stop()
            killed = kills.stop()
        audit = self._audit(jobs, tally)
        connection.close()
        outcome = build_outcome(scenario, audit, tally, log, rows, drain_s)
        outcome["kill_to_restart"] = kill_to_restart(killed)
        write_timeline(folder / "timeline.csv", rows)
        write_events(folder / "events.csv", log)
        write_jobs(folder / "jobs.csv", audit)
        if killed:
            write_kills(folder / "kills.csv", killed)
        write_json(folder / "outcome.json", outcome)
        for failure in player.failures:
            print(f"{self.label}: a fault action failed: {failure}", flush=True)
        return outcome

    def _autoscaling(self, log: EventLog) -> StackAutoscaling | None:
        if self.scenario.autoscale is None:
            return None
        policy = policy_for(*self.scenario.autoscale)
        return StackAutoscaling(self.stack, policy, announce=lambda line: log.note("scale", line)).start()

    def _drain(self, sampler: TimelineSampler) -> bool:
        """Until every accepted job has finished or failed, or drain_limit_s."""
        deadline = time.monotonic() + self.scenario.drain_limit_s
        while time.monotonic() < deadline:
            if sampler.all_ended():
                return True
            time.sleep(DRAIN_POLL_S)
        return False

    def _audit(self, jobs: EngineJobs, tally: SubmitTally) -> Audit:
        try:
            return audit_jobs(jobs, tally.accepted_jobs)
        except RedisError as exc:
            raise StackError(
                f"{self.scenario.name}: cannot audit the jobs, the broker is down: {exc}"
            ) from exc

    def _progress(self, row: Mapping[str, Any], overall_started: float) -> None:
        if (int(row["t"] / 0.5)) % PROGRESS_EVERY_ROWS:
            return
        elapsed = time.monotonic() - overall_started

        def show(key: str) -> str:
            return "-" if row.get(key) is None else str(row[key])

        print(
            f"{self.label} {self.phase} t={row['t']:.0f} s (run {elapsed:.0f} s): "
            f"accepted {row['accepted']}, finished {show('finished')}, "
            f"dead-lettered {show('dead_lettered')}, rejected {row['rejected']}, "
            f"queued {show('queued')}, workers {row['workers']}, breaker {row['breaker']}"
            + ("" if row["broker_up"] else ", BROKER DOWN"),
            flush=True,
        )


# ---- outcome -----------------------------------------------------------------------------------------------


def build_outcome(
    scenario: Scenario,
    audit: Audit,
    tally: SubmitTally,
    log: EventLog,
    rows: Sequence[Mapping[str, Any]],
    drain_s: float,
) -> dict[str, Any]:
    workers = [int(row["workers"]) for row in rows]
    return {
        "engine": scenario.engine,
        "concurrency": scenario.concurrency,
        "accepted": len(audit.jobs),
        "finished": audit.count("finished"),
        "dead_lettered": audit.count("failed"),
        "lost": audit.count("lost"),
        "lost_job_ids": audit.lost_ids[:20],
        "dead_letter_reasons": audit.dead_letter_reasons(),
        "rejected": tally.rejected_by_cause(),
        "retried": audit.retries(),
        "drain_s": round(drain_s, 2),
        "max_workers": max(workers, default=0),
        "min_workers": min(workers, default=0),
        "breaker": breaker_outcome(log, rows)
        if any(isinstance(e, LlmOutage) for e in scenario.events)
        else None,
        "broker": broker_outcome(log, tally.rejections, tally.accepted_jobs),
    }


def _first_t_after(rows: Sequence[Mapping[str, Any]], since: float, breaker: str) -> float | None:
    t = next((float(row["t"]) for row in rows if row["t"] >= since and row["breaker"] == breaker), None)
    return round(t - since, 2) if t is not None else None


def breaker_outcome(log: EventLog, rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    on, off = log.first("llm_outage_on"), log.first("llm_outage_off")
    return {
        "opened_after_s": _first_t_after(rows, on.t, "open") if on else None,
        "closed_after_s": _first_t_after(rows, off.t, "closed") if off else None,
    }


def broker_outcome(
    log: EventLog, rejections: Sequence[Answer], accepted: Sequence[tuple[str, float]]
) -> dict[str, Any] | None:
    stop, start = log.first("broker_stop"), log.first("broker_start")
    if stop is None or start is None:
        return None
    while_down = [a for a in rejections if stop.t <= a.t <= start.t and a.status == "503"]
    first_202 = min((t for _, t in accepted if t > start.t), default=None)
    return {
        "stopped_by": stop.detail.split()[0] if stop.detail else None,  # SIGTERM or SIGKILL
        "down_s": round(start.t - stop.t, 2),
        "api_503": len(while_down),
        "api_503_with_retry_after": sum(a.retry_after for a in while_down),
        "recovered_after_s": round(first_202 - start.t, 2) if first_202 is not None else None,
    }


def write_events(path: Path, log: EventLog) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(("t", "kind", "detail"))
        for event in log.rows():
            out.writerow((event.t, event.kind, event.detail))


def outcome_line(outcome: Mapping[str, Any]) -> str:
    extra = ""
    if outcome.get("breaker"):
        extra += f"; breaker opened after {outcome['breaker']['opened_after_s']} s, "
        extra += f"closed {outcome['breaker']['closed_after_s']} s after recovery"
    if restarts := outcome.get("kill_to_restart"):
        extra += (
            f"; {restarts['kills']} kills held {restarts['jobs']} jobs: restarted {restarts['restarted']}"
        )
        if restarts["retry_median_s"] is not None:
            retry = f"median {restarts['retry_median_s']} s, max {restarts['retry_max_s']} s"
            extra += f"; SIGKILL -> retry {retry}"
        if restarts["median_s"] is not None:
            extra += (
                f"; SIGKILL -> restart median {restarts['median_s']} s, p90 {restarts.get('p90_s')} s, "
                f"max {restarts['max_s']} s"
            )
        if restarts["dead_lettered"] or restarts["pending"]:
            extra += f", dead-lettered {restarts['dead_lettered']}, never restarted {restarts['pending']}"
    if outcome.get("broker"):
        broker = outcome["broker"]
        extra += f"; broker {broker['stopped_by']}, down {broker['down_s']} s: {broker['api_503']} x 503 "
        extra += f"({broker['api_503_with_retry_after']} with Retry-After), recovered after "
        extra += f"{broker['recovered_after_s']} s"
    engine = outcome.get("engine") or "rq"
    if outcome.get("concurrency"):
        engine += f" x {outcome['concurrency']} jobs per worker"
    return (
        f"      [{engine}] accepted {outcome['accepted']}, finished {outcome['finished']}, "
        f"dead-lettered {outcome['dead_lettered']} {outcome['dead_letter_reasons']}, LOST {outcome['lost']}; "
        f"retried {outcome['retried']}; rejected {outcome['rejected']}; drain {outcome['drain_s']} s; "
        f"workers {outcome['min_workers']}..{outcome['max_workers']}{extra}"
    )


# ---- the command (dispatched from loadtests/sweep/runner.py) ---------------------------------------------


def stack_env(profile: FaultProfile) -> dict[str, str]:
    stack = profile.stack
    return {
        "RESULT_TTL_S": str(RESULT_TTL_S),
        "FAILURE_TTL_S": str(max(RESULT_TTL_S, 86_400)),
        "JOB_TIMEOUT_S": str(stack.job_timeout_s),
        "LLM_TIMEOUT_S": str(stack.llm_timeout_s),
    }


def start_stack(profile: FaultProfile, scenarios: Sequence[Scenario], run_dir: Path) -> EmbeddedStack:
    mock, first = profile.mock, scenarios[0]
    return EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        workers=first.initial_workers,
        engine=first.engine,
        worker_concurrency=first.concurrency or DEFAULT_CONCURRENCY,
        mock_args=["--chat-latency", mock.chat_latency, "--embed-latency", mock.embed_latency],
        with_baseline=False,
        # Our own broker and mock (REDIS_URL/OPENAI_BASE_URL emptied): the broker must be restartable.
        env={**stack_env(profile), "REDIS_URL": "", "OPENAI_BASE_URL": ""},
        log_dir=run_dir / "logs",
    )


def run_profile(args: argparse.Namespace) -> tuple[int, Path | None]:
    """`ragload bench` with a fault profile: (exit code, the run folder if one was written)."""
    try:
        profile = load_fault_profile(args.profile)
    except ProfileError as exc:
        print(f"ragload bench: {exc}", file=sys.stderr)
        return 2, None
    if args.target:
        print(
            "ragload bench: fault profiles run against the embedded stack only (no --target)", file=sys.stderr
        )
        return 2, None
    scenarios = [s for s in profile.scenario if not args.only or args.only in s.name]
    if not scenarios:
        print(f"ragload bench: no scenario name contains '{args.only}'", file=sys.stderr)
        return 2, None
    print(
        f"fault profile {args.profile}: {len(scenarios)} scenario(s): {', '.join(s.name for s in scenarios)}"
    )
    if args.dry_run:
        return 0, None
    run_dir = new_run_dir(args.out)
    (run_dir / "cells").rmdir()  # a bench run's folder; a fault run has faults/ instead
    print(f"run folder {run_dir}", flush=True)
    started = time.monotonic()
    meta: dict[str, Any] = {
        "kind": "faults",
        "started": iso_now(),
        "git": git_revision(),
        "machine": machine_facts(),
        "packages": package_versions(),
        "command": sys.argv,
    }
    write_json(run_dir / "meta.json", meta)
    write_json(run_dir / "config.json", run_config(args.profile, profile, scenarios))
    stack = start_stack(profile, scenarios, run_dir)
    code = 0
    try:
        with stack:
            meta["stack_ready_s"] = round(time.monotonic() - started, 1)
            print(f"stack ready after {meta['stack_ready_s']} s: {stack.urls}", flush=True)
            for i, scenario in enumerate(scenarios, 1):
                print(f"[{i}/{len(scenarios)}] {scenario.name}: {scenario.description}", flush=True)
                outcome = ScenarioRun(stack, profile, scenario, i, len(scenarios)).run(
                    run_dir / FAULTS_FOLDER / scenario.name, started
                )
                print(outcome_line(outcome), flush=True)
                code = code or (1 if outcome["lost"] else 0)
    except (StackError, OSError, RuntimeError) as exc:
        print(f"ragload bench: stopped: {exc}", file=sys.stderr)
        meta["error"] = str(exc)
        code = 1
    finally:
        meta["ended"] = iso_now()
        meta["wall_s"] = round(time.monotonic() - started, 1)
        write_json(run_dir / "meta.json", meta)
    print(f"done in {meta['wall_s'] / 60:.1f} min: {run_dir}", flush=True)
    return code, run_dir


def run_config(name: str, profile: FaultProfile, scenarios: Sequence[Scenario]) -> dict[str, Any]:
    return {
        "kind": "faults",
        "profile": name,
        "description": profile.description,
        "seed": profile.seed,
        "mock": profile.mock.model_dump(),
        "stack": profile.stack.model_dump(),
        "stack_env": stack_env(profile),
        "scenarios": [s.resolved() for s in scenarios],
    }
