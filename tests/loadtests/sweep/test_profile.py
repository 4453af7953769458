from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtests.sweep.profile import (
    PROFILES_DIR,
    ProfileError,
    estimated_wall_s,
    expand,
    load_profile,
    parse_profile,
)


def minimal(**group: Any) -> dict[str, Any]:
    base = {"architecture": "queued", "mode": "longpoll", "load": "closed", "workers": [1, 2], "users": [4]}
    return {"run": {"deadline_s": 5}, "group": [{**base, **group}]}


@pytest.mark.parametrize("name", ["quick", "default", "full"])
def test_shipped_profiles_load_and_fit_their_budget(name: str) -> None:
    profile = load_profile(name)
    cells = expand(profile)
    assert cells and len({c.cell_id for c in cells}) == len(cells)
    assert {c.architecture for c in cells} == {"queued", "sync"}
    if profile.run.max_wall_s:
        assert estimated_wall_s(profile, cells) <= profile.run.max_wall_s
    assert len({c.deadline_s for c in cells}) == 1  # one deadline for both architectures


def test_quick_covers_both_architectures_and_three_worker_counts() -> None:
    cells = expand(load_profile("quick"))
    assert len({c.workers for c in cells if c.architecture == "queued"}) >= 3
    assert estimated_wall_s(load_profile("quick")) <= 180


def test_default_covers_workers_to_16_three_baseline_modes_and_both_loads() -> None:
    cells = expand(load_profile("default"))
    workers = {c.workers for c in cells if c.workers}
    assert min(workers) == 1 and max(workers) >= 16
    assert {c.mode for c in cells if c.architecture == "sync"} == {"threadpool", "blocking", "asyncio"}
    assert {c.load for c in cells} == {"closed", "open"}


def test_expand_makes_one_cell_per_worker_count_and_load() -> None:
    profile = parse_profile(minimal(users=[4, 8]))
    cells = expand(profile)
    assert [(c.workers, c.users) for c in cells] == [(1, 4), (1, 8), (2, 4), (2, 8)]
    assert cells[0].cell_id == "01-queued-longpoll-closed-w1-u4"
    assert cells[0].service_time_ms == pytest.approx(profile.mock.service_time_s * 1000)


def test_users_per_worker_and_baseline_concurrency() -> None:
    data = minimal(users=None, users_per_worker=3, workers=[1, 4])
    data["group"].append({"architecture": "sync", "mode": "threadpool", "load": "open", "rates": [5],
                          "processes": 2, "threads": 8})  # fmt: skip
    data["group"].append({"architecture": "sync", "mode": "blocking", "load": "closed", "users": [3],
                          "processes": 2})  # fmt: skip
    cells = expand(parse_profile(data))
    assert [c.users for c in cells[:2]] == [3, 12]
    assert (cells[2].concurrency, cells[2].rate, cells[2].users) == (16, 5.0, None)
    assert cells[3].concurrency == 2 and cells[3].baseline_key == ("blocking", 2, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(mode="threadpool"), "not a queued mode"),
        (minimal(workers=None), "needs `workers"),
        (minimal(users=None), "exactly one of `users` or `users_per_worker`"),
        (minimal(load="open"), "needs `rates"),
        (minimal(architecture="sync", mode="asyncio"), "`workers` is for queued groups"),
        (minimal(load="sideways"), "load"),
        (minimal(extra_key=1), "extra_key"),
        ({"group": []}, "group"),
        ({**minimal(), "mock": {"chat_latency": "lognormal:300"}}, "chat_latency"),
        ({**minimal(), "run": {"deadline_s": 0}}, "deadline_s"),
    ],
)
def test_invalid_profiles_say_what_is_wrong(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, source="test.toml")


def test_budget_is_enforced() -> None:
    data = minimal(workers=list(range(1, 30)))
    data["run"]["max_wall_s"] = 60
    with pytest.raises(ProfileError, match="exceeds the profile's max_wall_s"):
        parse_profile(data)


def test_unknown_profile_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="known profiles: .*quick"):
        load_profile("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(bad))
    assert (PROFILES_DIR / "quick.toml").exists()
