"""A bench profile's [mock] table may name an upstream profile (a preset or a probe-upstream file)."""

from __future__ import annotations

import pytest

from loadtests.sweep.profile import ProfileError, parse_profile

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
