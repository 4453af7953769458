"""The autoscaling policy (pure), its loop, and the KEDA manifest that mirrors it."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from system.autoscale import (
    Autoscaler,
    Decision,
    Load,
    ScalePolicy,
    ScaleState,
    decide,
    needed_workers,
    parse_bounds,
)
from tests.promtool import expression_test, requires_promtool, run_expression_tests

POLICY = ScalePolicy(
    min_workers=1,
    max_workers=8,
    backlog_per_worker=4,
    up_cooldown_s=2,
    down_stabilization_s=15,
    down_cooldown_s=5,
    down_step=1,
)
KEDA = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "keda-scaledobject.yaml"


class Sim:
    """Feeds the policy a load trace, one tick per second, applying each decision like the loop would."""

    def __init__(self, policy: ScalePolicy = POLICY, workers: int = 1) -> None:
        self.policy = policy
        self.workers = workers
        self.state = ScaleState()
        self.now = 0.0
        self.history: list[int] = []

    def tick(self, depth: int, busy: int | None = None, dt: float = 1.0) -> Decision:
        busy = min(self.workers, depth) if busy is None else busy
        decision = decide(depth, busy, self.workers, self.policy, self.state, self.now)
        self.workers, self.state = decision.workers, decision.state
        self.history.append(self.workers)
        self.now += dt
        return decision

    @property
    def changes(self) -> int:
        return sum(1 for a, b in zip(self.history, self.history[1:], strict=False) if a != b)


def test_need_is_busy_plus_backlog_within_bounds() -> None:
    assert needed_workers(0, 0, POLICY) == 1  # min
    assert needed_workers(1, 0, POLICY) == 1
    assert needed_workers(9, 2, POLICY) == 2 + 3
    assert needed_workers(1000, 8, POLICY) == 8  # max
    assert needed_workers(0, 3, POLICY) == 3  # never below the busy workers


def test_stale_busy_workers_of_killed_processes_do_not_inflate_the_need() -> None:
    # Valkey still lists 5 busy workers, but only 2 processes exist (3 were SIGKILLed mid-job).
    assert decide(0, 5, 2, POLICY, ScaleState(), 0.0).reason == "steady"


def test_scales_up_at_once_to_the_need() -> None:
    sim = Sim()
    decision = sim.tick(depth=20, busy=1)
    assert decision.workers == 1 + 5
    assert decision.reason.startswith("up")


def test_up_cooldown_holds_a_second_increase() -> None:
    sim = Sim()
    sim.tick(depth=8, busy=1)  # -> 3
    held = sim.tick(depth=40, busy=3)
    assert held.workers == 3 and held.reason == "up: cooling down"
    sim.tick(depth=40, busy=3)  # 2 s after the change
    assert sim.workers == 8


def test_scale_down_waits_for_stabilization_and_goes_step_by_step() -> None:
    sim = Sim(workers=6)
    for _ in range(14):  # 0..13 s of idle: still inside the 15 s window
        assert sim.tick(depth=0, busy=0).workers == 6
    sim.tick(depth=0, busy=0)  # 14 s
    sim.tick(depth=0, busy=0)  # 15 s: first step down
    assert sim.workers == 5
    for _ in range(4):  # next step only after the 5 s down cooldown
        sim.tick(depth=0, busy=0)
    assert sim.workers == 5
    sim.tick(depth=0, busy=0)
    assert sim.workers == 4
    for _ in range(60):
        sim.tick(depth=0, busy=0)
    assert sim.workers == 1  # down to min, never below
    assert sim.history == sorted(sim.history, reverse=True)  # monotone: no bounce on the way down


def test_a_short_lull_does_not_scale_down() -> None:
    sim = Sim(workers=4)
    for _ in range(10):
        sim.tick(depth=0, busy=0)
    sim.tick(depth=0, busy=4)  # all four busy again before the window closed: it restarts
    for _ in range(10):
        sim.tick(depth=0, busy=0)
    assert sim.workers == 4 and sim.changes == 0


def test_flapping_load_raises_the_count_once_and_keeps_it() -> None:
    sim = Sim()
    for second in range(120):
        sim.tick(depth=20 if second % 6 < 3 else 0)  # bursts of 3 s every 6 s
    assert sim.history == sorted(sim.history)  # never stepped down between bursts
    assert len(set(sim.history[10:])) == 1  # after the ramp-up, not a single change
    assert sim.workers == 8

    no_hysteresis = ScalePolicy(1, 8, down_stabilization_s=0, down_cooldown_s=0, down_step=8)
    eager = Sim(no_hysteresis)
    for second in range(120):
        eager.tick(depth=20 if second % 6 < 3 else 0)
    assert eager.changes > 20  # the same trace without hysteresis flaps


def test_follows_a_step_load_up_and_down() -> None:
    sim = Sim()
    for _ in range(30):
        sim.tick(depth=30, busy=sim.workers)  # sustained backlog
    assert sim.workers == 8
    for _ in range(60):
        sim.tick(depth=0, busy=0)
    assert sim.workers == 1


def test_out_of_bounds_count_is_corrected_at_once() -> None:
    assert decide(0, 0, 12, POLICY, ScaleState(), 0.0).workers == 8
    assert decide(0, 0, 0, POLICY, ScaleState(), 0.0).workers == 1


def test_bounds_parsing() -> None:
    assert parse_bounds("1:8") == (1, 8)
    assert parse_bounds("0:3") == (0, 3)
    for bad in ("8", "3:1", "a:b", "0:0", "-1:2"):
        with pytest.raises(ValueError):
            parse_bounds(bad)
    with pytest.raises(ValueError):
        ScalePolicy(min_workers=4, max_workers=2)


def test_loop_applies_decisions_through_the_callback_and_survives_a_failed_read() -> None:
    workers = [1]
    calls: list[int] = []
    failures = [RuntimeError("broker down")]
    done = threading.Event()

    def read_load() -> Load:
        if failures:
            raise failures.pop()
        return Load(queue_depth=12, busy_workers=1)

    def scale_to(n: int) -> None:
        calls.append(n)
        workers[0] = n
        done.set()

    scaler = Autoscaler(POLICY, read_load, lambda: workers[0], scale_to, interval_s=0.01).start()
    try:
        assert done.wait(5), "the loop never scaled"
    finally:
        scaler.stop()
    assert calls[0] == 1 + 3
    assert scaler.last_decision is not None and scaler.last_decision.workers == 4


KEDA_MANIFEST: dict[str, Any] = yaml.safe_load(KEDA.read_text(encoding="utf-8"))
# Loads to check: busy workers x waiting jobs, around the per-worker backlog and past the bounds.
BUSY = (0, 1, 2, 3, 7, 8, 12)
WAITING = (0, 1, 3, 4, 5, 8, 9, 31, 1000)


def keda_trigger() -> dict[str, Any]:
    triggers = KEDA_MANIFEST["spec"]["triggers"]
    assert len(triggers) == 1, "KEDA takes the largest of several triggers; the policy adds its two terms"
    trigger: dict[str, Any] = triggers[0]
    assert trigger["type"] == "prometheus" and trigger.get("metricType", "AverageValue") == "AverageValue"
    return trigger


def keda_policy() -> ScalePolicy:
    """The policy the manifest states: its bounds, and the divisor of the backlog in its query."""
    query = keda_trigger()["metadata"]["query"]
    divisors = re.findall(r"max\(ragload_queue_depth\)[^/]*/\s*(\d+)\s*\)", query)
    assert len(divisors) == 1, query
    spec = KEDA_MANIFEST["spec"]
    return ScalePolicy(spec["minReplicaCount"], spec["maxReplicaCount"], backlog_per_worker=int(divisors[0]))


def hpa_replicas_expr(query: str) -> str:
    """What KEDA and the HPA make of the query's value, in PromQL: AverageValue → ceil(value / threshold),
    clamped to [minReplicaCount, maxReplicaCount]."""
    threshold = float(keda_trigger()["metadata"]["threshold"])
    spec = KEDA_MANIFEST["spec"]
    return f"clamp(ceil(({query}) / {threshold:g}), {spec['minReplicaCount']}, {spec['maxReplicaCount']})"


def replica_series(api_replicas: int, busy: int, waiting: int) -> dict[str, float]:
    """What Prometheus holds after scraping `api_replicas` API pods: each reports the same broker gauges."""
    series: dict[str, float] = {}
    for replica in range(api_replicas):
        instance = f'instance="api-{replica + 1}:8000"'
        series[f'ragload_workers{{{instance},state="busy"}}'] = busy
        series[f'ragload_workers{{{instance},state="idle"}}'] = 1
        series[f"ragload_queue_depth{{{instance}}}"] = waiting
    return series


def mirror_cases(query: str, policy: ScalePolicy, api_replicas: int) -> list[dict[str, Any]]:
    return [
        expression_test(
            replica_series(api_replicas, busy, waiting),
            hpa_replicas_expr(query),
            needed_workers(waiting, busy, policy),
        )
        for busy in BUSY
        for waiting in WAITING
    ]


def test_keda_scaledobject_states_the_policy_defaults_and_behaviour() -> None:
    policy = keda_policy()
    defaults = ScalePolicy(policy.min_workers, policy.max_workers)
    assert policy.backlog_per_worker == defaults.backlog_per_worker
    assert KEDA_MANIFEST["spec"]["scaleTargetRef"]["name"] == "ragload-worker"
    behavior = KEDA_MANIFEST["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    [up] = behavior["scaleUp"]["policies"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert up["type"] == "Pods" and up["value"] >= policy.max_workers  # straight to the need
    assert up["periodSeconds"] == defaults.up_cooldown_s
    [down] = behavior["scaleDown"]["policies"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == defaults.down_stabilization_s
    assert down == {"type": "Pods", "value": defaults.down_step, "periodSeconds": defaults.down_cooldown_s}


def test_the_hpa_tolerance_never_hides_a_one_worker_change() -> None:
    """The HPA keeps the count while need/current is within 10 % of 1: within the bounds it never is."""
    policy = keda_policy()
    for current in range(max(1, policy.min_workers), policy.max_workers + 1):
        for need in (current - 1, current + 1):
            if policy.min_workers <= need <= policy.max_workers and need >= 1:
                assert abs(need / current - 1) > 0.1, (current, need)


@requires_promtool
@pytest.mark.parametrize("api_replicas", [1, 3])
def test_keda_query_computes_needed_workers_on_a_table_of_loads(api_replicas: int, tmp_path: Path) -> None:
    query = keda_trigger()["metadata"]["query"]
    cases = mirror_cases(query, keda_policy(), api_replicas)
    no_scrape = expression_test({"up": 0}, hpa_replicas_expr(query), keda_policy().min_workers)

    done = run_expression_tests([*cases, no_scrape], tmp_path)

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@requires_promtool
@pytest.mark.parametrize(
    "wrong_query",
    [
        # the manifest's busy trigger before issue 16 (KEDA took the larger of it and backlog / 4)
        'sum(ragload_workers{state="busy"})',
        # counted once per API replica
        '(sum(ragload_workers{state="busy"}) or vector(0))'
        " + ceil((sum(ragload_queue_depth) or vector(0)) / 4)",
        'max(ragload_workers{state="busy"}) + ceil(max(ragload_queue_depth) / 4)',  # no value without series
    ],
)
def test_the_table_catches_a_query_that_differs(wrong_query: str, tmp_path: Path) -> None:
    cases = mirror_cases(wrong_query, keda_policy(), api_replicas=2)
    cases.append(expression_test({"up": 0}, hpa_replicas_expr(wrong_query), keda_policy().min_workers))

    assert run_expression_tests(cases, tmp_path).returncode != 0
