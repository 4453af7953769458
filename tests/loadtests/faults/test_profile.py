"""Fault profiles: the shipped one parses, bad ones are refused with the reason; event plan; arrivals."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from loadtests.faults.events import Action, plan
from loadtests.faults.profile import (
    BrokerRestart,
    KillWorker,
    LlmOutage,
    is_fault_profile,
    load_fault_profile,
    parse_fault_profile,
)
from loadtests.faults.submitter import next_arrival, rate_at
from loadtests.sweep.profile import ProfileError


def scenario(**changes: Any) -> dict[str, Any]:
    return {"name": "s", "load": [{"at_s": 0, "rate": 10}], "duration_s": 5, **changes}


def profile(*scenarios: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "faults", "scenario": list(scenarios) or [scenario()]}


def test_the_shipped_faults_profile_holds_the_six_proof_runs() -> None:
    faults = load_fault_profile("faults")
    by_name = {s.name: s for s in faults.scenario}
    assert set(by_name) == {
        "worker-kills",
        "worker-kills-saq",
        "broker-restart",
        "broker-crash",
        "llm-outage",
        "autoscale",
    }
    crash = [e for e in by_name["broker-crash"].events if isinstance(e, BrokerRestart)]
    assert len(crash) == 1 and crash[0].signal == "SIGKILL"
    assert faults.stack.job_timeout_s == 120  # the system's default: no shortcut for killed workers
    kills = by_name["worker-kills"]
    assert kills.jobs == 10_000
    assert any(isinstance(e, KillWorker) and e.every_s == 5 for e in kills.events)
    assert any(getattr(e, "rate", None) == 0.1 for e in kills.events)
    assert {s.engine for s in faults.scenario if s.name != "worker-kills-saq"} == {"rq"}
    saq = by_name["worker-kills-saq"]  # the same proof run against the async engine
    assert (saq.engine, saq.jobs, saq.events) == ("saq", kills.jobs, kills.events)
    assert saq.concurrency is not None and saq.resolved()["concurrency"] == saq.concurrency
    assert any(isinstance(e, BrokerRestart) for e in by_name["broker-restart"].events)
    assert any(isinstance(e, LlmOutage) for e in by_name["llm-outage"].events)
    auto = by_name["autoscale"]
    assert auto.autoscale is not None and auto.resolved()["autoscale"] == list(auto.autoscale)
    low, high, low_again = (step.rate for step in auto.load)  # a step up, then back down
    assert high > low and high > low_again
    assert is_fault_profile("faults") and not is_fault_profile("quick")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (profile(scenario(duration_s=None)), "needs `jobs`"),
        (profile(scenario(load=[{"at_s": 1, "rate": 5}])), "start at at_s = 0"),
        (profile(scenario(load=[{"at_s": 0, "rate": 5}, {"at_s": 0, "rate": 6}])), "increase"),
        (profile(scenario(load=[{"at_s": 0, "rate": 0}])), "greater than 0"),
        (profile(scenario(events=[{"kind": "llm_outage", "from_s": 9, "to_s": 3}])), "must be after"),
        (profile(scenario(events=[{"kind": "meteor", "at_s": 1}])), "meteor"),
        (profile(scenario(events=[{"kind": "kill_worker"}])), "every_s"),
        (profile(scenario(autoscale=[3, 2])), "1 <= min <= max"),
        (profile(scenario(engine="saq")), "needs `concurrency`"),
        (profile(scenario(concurrency=8)), "is for engine = 'saq'"),
        (profile(scenario(engine="celery", concurrency=8)), "engine"),
        (profile(scenario(), scenario()), "unique"),
        (profile(scenario(name="Bad Name")), "name"),
        (profile(scenario(mock={"chat_latency": "soon"})), "KIND:ARGS"),
        ({"scenario": [scenario()]}, "kind"),
    ],
)
def test_a_bad_fault_profile_is_refused_with_the_reason(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ProfileError, match="faults.toml") as caught:
        parse_fault_profile(data, source="faults.toml")
    assert expected in str(caught.value)


def test_a_missing_profile_is_no_fault_profile(tmp_path: Path) -> None:
    assert not is_fault_profile(str(tmp_path / "nothing.toml"))
    with pytest.raises(ProfileError, match="no profile"):
        load_fault_profile(str(tmp_path / "nothing.toml"))


def test_plan_puts_each_action_at_its_time() -> None:
    parsed = parse_fault_profile(
        profile(
            scenario(
                events=[
                    {"kind": "kill_worker", "every_s": 5, "from_s": 2, "to_s": 17},
                    {"kind": "llm_errors", "rate": 0.2, "from_s": 1},
                    {"kind": "llm_outage", "from_s": 3, "to_s": 8},
                    {"kind": "broker_restart", "at_s": 4, "down_s": 2.5},
                ]
            ),
            scenario(
                name="crash", events=[{"kind": "broker_restart", "at_s": 4, "down_s": 2, "signal": "SIGKILL"}]
            ),
        )
    )
    assert {(a.t, a.kind) for a in plan(parsed.scenario[1])} == {(4, "broker_kill"), (6, "broker_start")}
    actions = plan(parsed.scenario[0])
    assert actions == sorted(actions)
    assert [a.t for a in actions if a.kind == "kill_worker"] == [7, 12, 17]
    assert Action(1, "llm_errors_on", 0.2) in actions
    assert not any(a.kind == "llm_errors_off" for a in actions)  # open window: ends with the load
    assert {(a.t, a.kind) for a in actions} >= {
        (3, "llm_outage_on"),
        (8, "llm_outage_off"),
        (4, "broker_stop"),
        (6.5, "broker_start"),
    }


def test_arrivals_follow_the_rate_steps() -> None:
    parsed = parse_fault_profile(
        profile(scenario(load=[{"at_s": 0, "rate": 50}, {"at_s": 20, "rate": 200}], duration_s=40))
    )
    steps = parsed.scenario[0].load
    assert rate_at(steps, 19.9) == 50 and rate_at(steps, 20) == 200
    rng = random.Random(1)
    times: list[float] = []
    t = 0.0
    while t < 40:
        t = next_arrival(steps, t, rng)
        times.append(t)
    first = [x for x in times if x < 20]
    second = [x for x in times if 20 <= x < 40]
    assert 800 < len(first) < 1200 and 3600 < len(second) < 4400
    gaps = [b - a for a, b in zip(second, second[1:], strict=False)]
    assert statistics.mean(gaps) == pytest.approx(1 / 200, rel=0.1)
    assert statistics.stdev(gaps) == pytest.approx(1 / 200, rel=0.15)  # exponential: std = mean
