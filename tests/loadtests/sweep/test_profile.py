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
    load_seed,
    parse_profile,
    run_order,
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


def test_quick_has_two_trials_of_inline_asyncio_around_the_knee_and_a_pool_past_it() -> None:
    cells = expand(load_profile("quick"))
    assert {c.repeats for c in cells} == {2}
    asyncio = {c.rate for c in cells if c.mode == "asyncio"}
    knee = load_profile("quick").mock.curve()
    assert knee is not None and min(asyncio) < knee.knee.rps < max(asyncio)  # below and past the knee
    assert {c.rate for c in cells if c.architecture == "queued"} & asyncio  # the pool at a rate past it
    assert estimated_wall_s(load_profile("quick")) <= 150


def test_default_repeats_every_cell_behind_the_answer_and_leaves_room_in_its_budget() -> None:
    profile = load_profile("default")
    cells = expand(profile)
    knee_cells = [c for c in cells if c.upstream == "vllm-like"]
    assert min(c.repeats for c in knee_cells) >= 3  # every cell behind the Answer: an interval from 3 trials
    assert len({c.workers for c in cells if c.architecture == "queued" and c.load == "closed"}) >= 2
    asyncio_rates = {c.rate for c in knee_cells if c.mode == "asyncio" and not c.burst}
    assert len(asyncio_rates) >= 2  # where inline asyncio starts to time out
    assert {c.rate for c in knee_cells if c.architecture == "queued" and not c.burst} & asyncio_rates
    bursts = {(c.architecture, c.rate) for c in knee_cells if c.burst}
    assert {architecture for architecture, _ in bursts} == {"queued", "sync"}  # a burst in each design
    assert any(c.upstream == "unbounded" for c in cells)  # the contrast
    assert all(group.why for group in profile.group)  # each group says why it is there
    # the four corners at one load on the knee: inline threadpool and asyncio, queued RQ and SAQ
    corners = {(c.architecture, c.mode, c.engine if c.architecture == "queued" else "") for c in knee_cells
               if c.rate == 30 and not c.burst}  # fmt: skip
    assert {("sync", "threadpool", ""), ("sync", "asyncio", "")} <= corners
    assert {("queued", "longpoll", "rq"), ("queued", "longpoll", "saq")} <= corners
    # the 12 min budget less ≈ 1.5 min of set-up and index (the estimate runs ≈ 1.4× short on a busy machine)
    assert 1.4 * estimated_wall_s(profile, cells) <= 10.5 * 60


def test_trials_at_one_load_share_their_seed_whatever_the_architecture() -> None:
    data = minimal(users=[6], workers=[2])
    data["run"]["repeats"] = 3
    data["group"].append({"architecture": "sync", "mode": "threadpool", "load": "closed", "users": [6],
                          "threads": 2})  # fmt: skip
    data["group"].append({"architecture": "sync", "mode": "asyncio", "load": "closed", "users": [12],
                          "repeats": 2})  # fmt: skip
    cells = expand(parse_profile(data))
    queued = [c for c in cells if c.architecture == "queued"]
    threads = [c for c in cells if c.mode == "threadpool"]
    assert [c.trial for c in queued] == [1, 2, 3] and len({c.seed for c in queued}) == 3
    assert [c.seed for c in queued] == [c.seed for c in threads]  # paired: same arrivals, same requests
    assert (
        queued[0].cell_id == "01-queued-longpoll-closed-w2-u6-trial1"
        and queued[0].cell == queued[0].cell_id[:-7]
    )
    other_load = [c for c in cells if c.mode == "asyncio"]
    assert len(other_load) == 2 and not {c.seed for c in other_load} & {c.seed for c in queued}
    assert load_seed(7, "closed", 6, 1) == queued[0].seed  # a stable hash: the same in every process
    assert [c.repeats for c in expand(parse_profile(data), repeats=5)] == [5] * 15  # --repeats overrides


def test_run_order_interleaves_the_trials_in_rounds() -> None:
    data = minimal(users=[4, 8], workers=[1, 2])
    data["run"]["repeats"] = 3
    cells = expand(parse_profile(data))
    order = run_order(cells, seed=7)
    assert sorted(c.cell_id for c in order) == sorted(c.cell_id for c in cells)
    assert [c.trial for c in order] == [1] * 4 + [2] * 4 + [3] * 4  # round k: trial k of every cell
    # one stack configuration's cells stay together; a serpentine, so no switch between rounds
    assert [c.workers for c in order] == [1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2]
    assert [c.cell_id for c in run_order(cells, seed=7)] == [c.cell_id for c in order]  # seeded: repeatable


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
