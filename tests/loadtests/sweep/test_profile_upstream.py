"""A bench profile's [mock] table may name an upstream profile (a preset or a probe-upstream file)."""

from __future__ import annotations

import pytest

from loadtests.sweep.profile import (
    ProfileError,
    estimated_wall_s,
    expand,
    load_profile,
    overloaded,
    parse_profile,
)
from loadtests.sweep.runner import cell_live_config, upstream_facts
from loadtests.sweep.summary import ideal_rps
from mocks.upstream import load_upstream

GROUP = {"architecture": "sync", "mode": "asyncio", "load": "closed", "users": [1]}


def test_an_upstream_preset_reaches_the_mock_flags_and_the_live_config() -> None:
    profile = parse_profile({"mock": {"upstream": "vllm-like"}, "group": [GROUP]})
    assert profile.mock.args(seed=5) == ["--upstream", "vllm-like", "--seed", "5"]
    live = profile.mock.live_config()
    assert live["capacity"] == "batch" and live["max_batch"] == 8
    assert live["chat_latency"] == "lognormal:145ms,0.25"  # the upstream's, not the profile's default


def test_latencies_the_profile_sets_win_over_the_upstream() -> None:
    profile = parse_profile(
        {"mock": {"upstream": "vllm-like", "chat_latency": "const:5ms"}, "group": [GROUP]}
    )
    assert profile.mock.args(seed=1) == [
        "--upstream",
        "vllm-like",
        "--chat-latency",
        "const:5ms",
        "--seed",
        "1",
    ]
    assert profile.mock.live_config()["chat_latency"] == "const:5ms"


def test_without_an_upstream_nothing_changes() -> None:
    profile = parse_profile({"group": [GROUP]})
    assert profile.mock.live_config() == {
        "chat_latency": "lognormal:300ms,0.25",
        "embed_latency": "const:10ms",
    }
    assert profile.mock.args(seed=2)[:2] == ["--chat-latency", "lognormal:300ms,0.25"]


def test_an_unknown_upstream_is_a_clear_error() -> None:
    with pytest.raises(ProfileError, match="no upstream profile 'vllm-lite'.*presets: unbounded, vllm-like"):
        parse_profile({"mock": {"upstream": "vllm-lite"}, "group": [GROUP]})


# ---- a group's own upstream, and the ideal from a capacity curve ------------------------------------------

KNEE_PROFILE = {
    "run": {"duration_s": 6, "deadline_s": 5},
    "mock": {"upstream": "vllm-like", "embed_latency": "const:15ms"},
    "group": [
        {"architecture": "queued", "mode": "longpoll", "load": "open", "workers": [4, 12], "rates": [30]},
        {"architecture": "sync", "mode": "asyncio", "load": "open", "rates": [30]},
        {"architecture": "sync", "mode": "asyncio", "load": "open", "rates": [30], "upstream": "unbounded"},
        {
            "architecture": "queued",
            "mode": "longpoll",
            "load": "closed",
            "workers": [8],
            "users_per_worker": 3,
        },
        {
            "architecture": "queued",
            "mode": "longpoll",
            "load": "open",
            "workers": [12],
            "rates": [60],
            "duration_s": 3,
            "burst": True,
        },
    ],
}


def test_each_group_puts_its_own_upstream_on_the_mock_before_its_cells() -> None:
    profile = parse_profile(KNEE_PROFILE)
    cells = expand(profile)
    assert [c.upstream for c in cells] == ["vllm-like"] * 3 + ["unbounded", "vllm-like", "vllm-like"]
    bodies = {c.cell: cell_live_config(profile, c) for c in cells}
    knee, contrast = bodies[cells[2].cell], bodies[cells[3].cell]
    assert knee == {**load_upstream("vllm-like"), "embed_latency": "const:15ms"}
    assert contrast == {**load_upstream("unbounded"), "embed_latency": "const:15ms"}
    assert contrast["capacity"] == "unbounded" and knee["capacity"] == "batch"
    # the same rate on both upstreams shares its seed: the same arrivals and requests (common random numbers)
    assert cells[2].seed == cells[3].seed


def test_on_an_upstream_with_a_knee_the_ideal_comes_from_its_curve_not_from_w_over_s() -> None:
    profile = parse_profile(KNEE_PROFILE)
    w4, w12, inline, contrast, closed, burst = expand(profile)
    curve = profile.mock.curve()
    assert curve is not None and 8 <= curve.knee.concurrency <= 16
    assert w4.server_capacity_rps == pytest.approx(curve.rps(4), abs=1e-3)
    assert w4.server_capacity_rps < 4 / (w4.service_time_ms / 1000)  # calls slow as they share the engine
    assert w12.upstream_rps == pytest.approx(curve.knee.rps, abs=1e-3)
    assert inline.server_capacity_rps is None and inline.upstream_rps == pytest.approx(
        curve.knee.rps, abs=1e-3
    )
    assert closed.upstream_rps == pytest.approx(curve.rps(8), abs=1e-3)  # 24 users, 8 calls at most
    # the unbounded contrast: no curve, the ideal stays concurrency / S (asyncio: unbounded)
    assert contrast.upstream_rps is None and contrast.server_capacity_rps is None
    assert ideal_rps(w12, offered_rps=30.0) == (pytest.approx(curve.knee.rps, abs=1e-3), "upstream")
    assert ideal_rps(w12, offered_rps=10.0) == (10.0, "client")
    assert overloaded(inline) and not overloaded(contrast)
    assert burst.burst and burst.duration_s == 3 and burst.warmup_s == 0  # a burst starts cold


def test_the_run_config_carries_each_upstreams_curve_and_knee_as_numbers() -> None:
    profile = parse_profile(KNEE_PROFILE)
    facts = upstream_facts(profile, expand(profile))
    assert set(facts) == {"vllm-like", "unbounded"}
    assert facts["unbounded"]["model"] == "unbounded"
    knee = facts["vllm-like"]
    assert knee["model"] == "batch" and knee["knee"]["concurrency"] == profile.mock.curve().knee.concurrency
    latencies = [p["latency_ms"] for p in knee["curve"]]
    assert latencies == sorted(latencies)  # every call slower with more in flight


def test_a_burst_needs_its_own_duration_and_an_unknown_group_upstream_is_a_clear_error() -> None:
    burst = {"architecture": "sync", "mode": "asyncio", "load": "open", "rates": [60], "burst": True}
    with pytest.raises(ProfileError, match="a burst is an open-loop group with its own"):
        parse_profile({"group": [burst]})
    with pytest.raises(ProfileError, match="no upstream profile 'vllm-lite'"):
        parse_profile({"group": [{**GROUP, "upstream": "vllm-lite"}]})


def test_the_shipped_profiles_run_on_the_knee_and_fit_their_budgets() -> None:
    for name, budget_s in (("default", 8.5 * 60), ("quick", 2.5 * 60)):
        profile = load_profile(name)
        cells = expand(profile)
        assert {c.upstream for c in cells} >= {"vllm-like"}
        assert estimated_wall_s(profile, cells) <= budget_s
        assert all(group.why for group in profile.group)
