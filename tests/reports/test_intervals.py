"""Known answers and coverage of the report's intervals (simulated data, fixed seeds: deterministic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from reports.intervals import (
    Interval,
    mean_interval,
    nearest_rank,
    paired_difference,
    quantile_interval,
    samples_needed,
    slope_interval,
    welch_difference,
    wilson,
)

SIMULATIONS = 2000  # coverage estimated within ±0.015 (2 standard errors of a binomial share near 0.95)


def test_t_interval_known_answer() -> None:
    found = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) · s / √n
    assert found.estimate == 3.0 and found.n == 5
    assert found.low == pytest.approx(3 - half, abs=1e-5) and found.high == pytest.approx(3 + half, abs=1e-5)


def test_t_interval_edge_cases() -> None:
    assert mean_interval([4.0]).known is False  # one trial: no spread, no interval
    same = mean_interval([0.0, 0.0, 0.0])  # every trial 0 % timeouts: a point, not an error
    assert (same.low, same.high) == (0.0, 0.0)
    with pytest.raises(ValueError):
        mean_interval([])


def test_t_interval_covers_the_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    hits = sum(mean_interval(list(rng.normal(10, 2, size=4))).covers(10.0) for _ in range(SIMULATIONS))
    assert 0.935 <= hits / SIMULATIONS <= 0.965


def test_wilson_known_answer_and_coverage() -> None:
    found = wilson(3, 100)
    assert found is not None
    z = 1.959964
    centre = (0.03 + z * z / 200) / (1 + z * z / 100)
    half = z / (1 + z * z / 100) * math.sqrt(0.03 * 0.97 / 100 + z * z / 40000)
    assert found.low == pytest.approx(centre - half, abs=1e-6)
    assert found.high == pytest.approx(centre + half, abs=1e-6)
    none = wilson(0, 300)
    assert none is not None and none.low == 0.0 and 0.01 < (none.high or 0) < 0.013  # 0 of 300: up to 1.3 %
    assert wilson(0, 0) is None
    rng = np.random.default_rng(2)
    p = 0.05
    hits = 0
    for _ in range(SIMULATIONS):
        interval = wilson(int(rng.binomial(200, p)), 200)
        hits += bool(interval and interval.covers(p))
    assert 0.93 <= hits / SIMULATIONS <= 0.975


def test_order_statistic_interval_is_scipys_and_exists_from_the_needed_count_on() -> None:
    assert [samples_needed(p) for p in (0.5, 0.95, 0.99)] == [6, 72, 368]
    rng = np.random.default_rng(3)
    for p in (0.5, 0.95, 0.99):
        needed = samples_needed(p)
        below = quantile_interval(list(rng.exponential(size=needed - 1)), p)
        assert below is not None and not below.known and below.n == needed - 1
        values = list(rng.exponential(size=needed))
        found = quantile_interval(values, p)
        assert found is not None and found.known
        reference = stats.quantile_test(np.array(values), q=found.estimate, p=p).confidence_interval(0.95)
        assert (found.low, found.high) == (reference.low, reference.high)
        assert found.estimate == nearest_rank(values, p)
        # The bounds are samples themselves (order statistics), around the estimate.
        assert found.low in values and found.high in values
        assert found.low <= found.estimate <= found.high


def test_order_statistic_interval_covers_the_true_p99_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    true_p99 = math.log(100)  # exponential with mean 1
    runs = 500
    hits = 0
    for _ in range(runs):
        found = quantile_interval(list(rng.exponential(size=600)), 0.99)
        hits += bool(found and found.covers(true_p99))
    assert hits / runs >= 0.93  # distribution-free: conservative, at least the nominal 95 % (less noise)


def test_paired_difference_removes_what_both_sides_share() -> None:
    rng = np.random.default_rng(5)
    shared = rng.normal(0, 5, size=6)  # e.g. each trial's upstream luck, the same for both cells
    a = list(20 + shared + rng.normal(0, 0.3, size=6))
    b = list(19 + shared + rng.normal(0, 0.3, size=6))
    paired, unpaired = paired_difference(a, b), welch_difference(a, b)
    assert paired.covers(1.0) and paired.low is not None and paired.low > 0
    assert (paired.half_width or 0) * 5 < (unpaired.half_width or 0)
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_welch_difference_is_scipys() -> None:
    a, b = [10.0, 12.0, 11.0, 13.5], [8.0, 9.5, 7.0]
    found = welch_difference(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert found.low == pytest.approx(reference.low) and found.high == pytest.approx(reference.high)
    assert welch_difference([1.0], [2.0]).known is False


def test_slope_interval_known_answer_and_coverage() -> None:
    xs = [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    ys = [3.0, 3.1, 6.0, 6.2, 12.0, 11.8]
    found = slope_interval(xs, ys)
    fit = stats.linregress(xs, ys)
    assert found is not None and found.estimate == pytest.approx(fit.slope)
    half = float(stats.t.ppf(0.975, 4)) * fit.stderr
    assert (found.high or 0) - found.estimate == pytest.approx(half)
    assert slope_interval([2.0, 2.0], [1.0, 3.0]) is None  # one worker count: no slope
    rng = np.random.default_rng(6)
    x = np.repeat([1.0, 2.0, 4.0, 8.0], 3)
    hits = sum(
        bool((s := slope_interval(list(x), list(3.0 * x + rng.normal(0, 1, size=x.size)))) and s.covers(3.0))
        for _ in range(SIMULATIONS)
    )
    assert 0.935 <= hits / SIMULATIONS <= 0.965


def test_interval_helpers() -> None:
    interval = Interval(0.5, 0.2, 0.8, 3, "t")
    assert interval.scaled(100) == Interval(50.0, 20.0, 80.0, 3, "t")
    assert interval.clipped(0.3, 0.6) == Interval(0.5, 0.3, 0.6, 3, "t")
    assert interval.overlaps(Interval(0.9, 0.8, 1.0, 3, "t")) and not interval.overlaps(
        Interval(1, 0.9, 1.1, 3, "t")
    )
    assert interval.half_width == pytest.approx(0.3)
