"""The computed verdict of a fault run: a few sentences per scenario, every figure taken from its files.

A finding is `failed` when the run broke a promise of issue 7: an accepted job lost, the breaker not opening
during an outage or not closing after it, a 503 without Retry-After, the API not recovering after a broker
restart, the autoscaler not following the load, or the run's own files contradicting each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reports.faults.data import FaultRun, FaultScenario, Outcome, ScenarioSpec

LOST_IDS_SHOWN = 10  # enough to start looking in the logs; outcome.json keeps up to 20
RESTART_PROMISE_S = 30.0  # a killed worker's job is started again by another worker within this (issue 16)


@dataclass(frozen=True)
class Finding:
    text: str
    failed: bool = False


@dataclass(frozen=True)
class ScenarioVerdict:
    name: str
    description: str
    findings: list[Finding]

    @property
    def failed(self) -> bool:
        return any(finding.failed for finding in self.findings)


def _counts(counts: Mapping[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{what}: {count:,}" for what, count in ordered)


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def outcome_sentence(name: str, outcome: Outcome) -> Finding:
    reasons = f" ({_counts(outcome.dead_letter_reasons)})" if outcome.dead_letter_reasons else ""
    drain = "" if outcome.drain_s is None else f"; drained in {_seconds(outcome.drain_s)}"
    return Finding(
        f"{name}: {outcome.accepted:,} accepted → {outcome.finished:,} finished, "
        f"{outcome.dead_lettered:,} dead-lettered{reasons}, {outcome.lost:,} lost; "
        f"{outcome.retried:,} retries{drain}."
    )


def lost_finding(outcome: Outcome) -> Finding | None:
    if outcome.lost <= 0:
        return None
    shown = outcome.lost_job_ids[:LOST_IDS_SHOWN]
    ids = f" First lost job ids: {', '.join(shown)}." if shown else " outcome.json lists no job ids."
    return Finding(
        f"FAILURE: {outcome.lost:,} accepted jobs LOST (neither finished nor dead-lettered with a reason "
        f"after the drain).{ids}",
        failed=True,
    )


def rejected_finding(outcome: Outcome) -> Finding | None:
    total = sum(outcome.rejected.values())
    if total == 0:
        return None
    return Finding(f"The API turned away {total:,} submissions ({_counts(outcome.rejected)}).")


def breaker_finding(outcome: Outcome) -> Finding | None:
    breaker = outcome.breaker
    if breaker is None:
        return None
    opened, closed = breaker.opened_after_s, breaker.closed_after_s
    if opened is None:
        return Finding("FAILURE: the LLM circuit breaker never opened during the outage.", failed=True)
    if closed is None:
        return Finding(
            f"FAILURE: the LLM circuit breaker opened {_seconds(opened)} after the outage began but never "
            "closed after it ended.",
            failed=True,
        )
    return Finding(
        f"The LLM circuit breaker opened {_seconds(opened)} after the outage began, "
        f"closed {_seconds(closed)} after it ended."
    )


def broker_findings(outcome: Outcome) -> list[Finding]:
    broker = outcome.broker
    if broker is None:
        return []
    if broker.api_503_with_retry_after == broker.api_503:
        retry_after = "all with Retry-After" if broker.api_503 else "none needed"
    else:
        retry_after = f"only {broker.api_503_with_retry_after:,} with Retry-After"
    recovered = (
        "no 202 after it came back"
        if broker.recovered_after_s is None
        else f"first 202 {_seconds(broker.recovered_after_s)} after it came back"
    )
    crashed = " SIGKILLed (a crash) and" if broker.stopped_by == "SIGKILL" else ""
    text = (
        f"Valkey{crashed} down {_seconds(broker.down_s)}: the API answered {broker.api_503:,} × 503 "
        f"({retry_after}), "
        f"{recovered}; {outcome.lost:,} lost."
    )
    findings = [Finding(text, failed=broker.recovered_after_s is None or outcome.lost > 0)]
    if broker.api_503_with_retry_after != broker.api_503:
        missing = broker.api_503 - broker.api_503_with_retry_after
        findings.append(
            Finding(f"FAILURE: {missing:,} answers of 503 came without Retry-After.", failed=True)
        )
    return findings


def autoscale_finding(spec: ScenarioSpec, scenario: FaultScenario, outcome: Outcome) -> Finding | None:
    if spec.autoscale is None:
        return None
    counts = [int(row.workers) for row in scenario.timeline if row.workers is not None]
    if not counts:
        return Finding("FAILURE: timeline.csv has no worker counts to judge the autoscaler by.", failed=True)
    first, last = counts[0], counts[-1]
    peak = max(outcome.max_workers or 0, *counts)
    low, high = spec.autoscale
    bounds = f"(autoscale {low}–{high})"
    if peak <= first:
        return Finding(f"FAILURE: workers stayed at {first} {bounds}: the autoscaler never scaled up.", True)
    # After the peak the trailing light load may scale up by one again for a job in hand: judge the scale-down
    # by the fewest workers seen after the peak, and say where it ended.
    after_peak = counts[max(i for i, n in enumerate(counts) if n == max(counts)) :]
    lowest = min(after_peak)
    if lowest > first:
        return Finding(
            f"FAILURE: workers rose from {first} to {peak} {bounds} but never came back below {lowest}.", True
        )
    ended = f", {last} at the end" if last != lowest else ""
    return Finding(f"Workers followed the load from {first} to {peak} and back to {lowest} {bounds}{ended}.")


def kill_finding(scenario: FaultScenario) -> Finding | None:
    kills = scenario.events_of("kill_worker")
    if not kills:
        return None
    respawns = len(scenario.events_of("respawn_worker"))
    text = f"{len(kills):,} worker kills (SIGKILL) mid-run, {respawns:,} respawned"
    restarts = scenario.outcome.kill_to_restart if scenario.outcome else None
    if restarts is None:
        return Finding(text + ".")
    text += f"; the killed workers held {restarts.jobs:,} jobs"
    if restarts.retry_median_s is not None and restarts.retry_max_s is not None:
        text += (
            f", retried after median {_seconds(restarts.retry_median_s)} "
            f"(max {_seconds(restarts.retry_max_s)})"
        )
    if restarts.median_s is not None and restarts.min_s is not None and restarts.max_s is not None:
        p90 = f"p90 {_seconds(restarts.p90_s)}, " if restarts.p90_s is not None else ""
        text += (
            f", {restarts.restarted:,} started again by another worker after median "
            f"{_seconds(restarts.median_s)} (min {_seconds(restarts.min_s)}, {p90}"
            f"max {_seconds(restarts.max_s)}) from the SIGKILL"
        )
    if restarts.dead_lettered:
        text += f", {restarts.dead_lettered:,} dead-lettered"
    late = restarts.max_s is not None and restarts.max_s > RESTART_PROMISE_S
    if restarts.pending or late:
        never = f"{restarts.pending:,} never started again" if restarts.pending else ""
        slow = f"the slowest after {_seconds(restarts.max_s or 0)}" if late else ""
        promise = f"promise: within {RESTART_PROMISE_S:.0f} s"
        return Finding(f"FAILURE: {text}; {', '.join(x for x in (never, slow) if x)} ({promise}).", True)
    return Finding(text + ".")


def engine_text(spec: ScenarioSpec) -> str:
    """Which workers the scenario ran on: RQ's (one job at a time) or SAQ's (C jobs in flight each)."""
    if spec.engine == "saq":
        return f"SAQ workers, {spec.concurrency or '?'} jobs in flight per process"
    return "RQ workers, one job at a time per process"


def scenario_verdict(scenario: FaultScenario) -> ScenarioVerdict:
    spec = scenario.spec
    description = f"{spec.description} ({engine_text(spec)})" if spec else ""
    findings = [Finding(f"FAILURE: {problem}.", failed=True) for problem in scenario.problems]
    outcome = scenario.outcome
    if outcome is None:
        findings.insert(0, Finding(f"FAILURE: {scenario.name} has no audit: nothing can be said.", True))
        return ScenarioVerdict(scenario.name, description, findings)
    optional: list[Finding | None] = [lost_finding(outcome), rejected_finding(outcome)]
    optional.append(kill_finding(scenario))
    optional += [breaker_finding(outcome), *broker_findings(outcome)]
    if spec is not None:
        optional.append(autoscale_finding(spec, scenario, outcome))
    findings = [outcome_sentence(scenario.name, outcome)] + [f for f in optional if f] + findings
    return ScenarioVerdict(scenario.name, description, findings)


def run_summary(verdicts: list[ScenarioVerdict], run: FaultRun) -> Finding:
    """One line over all scenarios: total accepted and lost, and which scenarios failed."""
    outcomes = [s.outcome for s in run.scenarios if s.outcome is not None]
    accepted = sum(o.accepted for o in outcomes)
    lost = sum(o.lost for o in outcomes)
    failed = [v.name for v in verdicts if v.failed]
    scenarios = f"{len(verdicts)} scenario" + ("" if len(verdicts) == 1 else "s")
    totals = f"{scenarios}, {accepted:,} accepted jobs, {lost:,} lost"
    if not verdicts:
        return Finding("FAILURE: the run folder holds no scenario.", failed=True)
    if failed:
        return Finding(f"FAILURE in {', '.join(failed)} ({totals}).", failed=True)
    return Finding(f"All {totals}: every accepted job finished or was dead-lettered with a reason.")
