from __future__ import annotations

import statistics

import pytest

from loadtests.locust.shapes import ArrivalSchedule, PoissonArrivals, Step, UserSteps, pool_size


def test_user_steps_tick_follows_the_steps_then_ends() -> None:
    shape = UserSteps((Step(10, 5, 5.0), Step(10, 10, 2.0)))
    assert [shape.tick(t) for t in (0, 9.9, 10, 19.9, 20, 25)] == [
        (5, 5.0),
        (5, 5.0),
        (10, 2.0),
        (10, 2.0),
        None,
        None,
    ]
    assert shape.duration_s == 20


def test_rising_steps() -> None:
    shape = UserSteps.rising(start=5, stop=20, step=5, step_s=30)
    assert [shape.tick(t) for t in (0, 30, 60, 90, 120)] == [
        (5, 5.0),
        (10, 10.0),
        (15, 15.0),
        (20, 20.0),
        None,
    ]


def test_constant_step_spawns_everyone_within_a_second() -> None:
    assert UserSteps.constant(24, 13).tick(0) == (24, 24.0)
    assert UserSteps.constant(24, 13).tick(13) is None


@pytest.mark.parametrize("bad", [(0, 1, 1.0), (1, -1, 1.0), (1, 1, 0.0)])
def test_step_rejects_nonsense(bad: tuple[float, int, float]) -> None:
    with pytest.raises(ValueError):
        Step(*bad)


def test_poisson_arrivals_rate_and_exponential_gaps() -> None:
    rate, duration = 40.0, 500.0
    offsets = list(PoissonArrivals(rate, duration, pool=1, seed=3).offsets())
    assert abs(len(offsets) / duration - rate) / rate < 0.03  # 20,000 arrivals: 1 sigma is 0.7 %
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / rate, rel=0.03)
    # exponential: standard deviation equals the mean, and P(gap > mean) = 1/e
    assert statistics.pstdev(gaps) == pytest.approx(mean, rel=0.05)
    assert sum(g > mean for g in gaps) / len(gaps) == pytest.approx(0.3679, abs=0.015)
    assert all(0 < t < duration for t in offsets) and offsets == sorted(offsets)


def test_poisson_arrivals_are_reproducible_with_a_seed() -> None:
    a = list(PoissonArrivals(5, 60, 1, seed=9).offsets())
    b = list(PoissonArrivals(5, 60, 1, seed=9).offsets())
    c = list(PoissonArrivals(5, 60, 1, seed=10).offsets())
    assert a == b and a != c


def test_open_loop_tick_holds_the_pool_for_the_duration() -> None:
    shape = PoissonArrivals.for_deadline(rate=20, duration_s=13, deadline_s=5)
    assert shape.pool == pool_size(20, 5) >= 20 * 5
    assert shape.tick(0) == (shape.pool, float(shape.pool))
    assert shape.tick(12.9) == (shape.pool, float(shape.pool))
    assert shape.tick(13) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_schedule_hands_out_arrivals_once_and_counts_late_claims() -> None:
    clock = FakeClock()
    arrivals = PoissonArrivals(10, 2, pool=1, seed=1)
    schedule = ArrivalSchedule(arrivals, start=clock.now, clock=clock)
    expected = [clock.now + t for t in arrivals.offsets()]
    first = schedule.claim()
    assert first is not None and first[0] == expected[0] and first[1] == 0.0
    clock.now = expected[1] + 0.5  # nobody was free when the second arrival was due
    second = schedule.claim()
    assert second is not None and second[1] == pytest.approx(0.5)
    assert schedule.late == 1 and schedule.max_lag_s == pytest.approx(0.5)
    claimed = [first, second]
    while (item := schedule.claim()) is not None:
        claimed.append(item)
    assert [arrival.due for arrival in claimed] == expected
    assert [arrival.position for arrival in claimed] == list(range(len(expected)))
