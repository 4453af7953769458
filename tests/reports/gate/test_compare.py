"""The gate's decision rule on paired rounds: fail only on a confident slowdown beyond the margin."""

from __future__ import annotations

import math
import random

import pytest

from reports.gate.compare import CANNOT_TELL, FAIL, FASTER, PASS, compare, decide, rounds_needed


def rounds(base: float, factor: float, noise: float, n: int, seed: int) -> tuple[list[float], list[float]]:
    """n paired rounds: A around `base`, B around `base * factor`, each with relative spread `noise`."""
    rng = random.Random(seed)
    a = [base * (1 + rng.gauss(0, noise)) for _ in range(n)]
    b = [base * factor * (1 + rng.gauss(0, noise)) for _ in range(n)]
    return a, b


def test_an_unchanged_metric_passes() -> None:
    a, b = rounds(10.0, 1.0, 0.02, 4, seed=1)
    result = compare(a, b)
    assert result.verdict == PASS
    assert 0.9 < result.low <= result.slowdown <= result.high < 1.10


def test_a_fifty_percent_slowdown_fails_with_its_interval_above_the_margin() -> None:
    a, b = rounds(10.0, 1.5, 0.03, 3, seed=2)
    result = compare(a, b)
    assert result.verdict == FAIL and result.failed
    assert 1.10 < result.low <= result.slowdown <= result.high
    assert result.slowdown == pytest.approx(1.5, rel=0.1)


@pytest.mark.parametrize("seed", range(50))
def test_a_five_percent_change_never_fails(seed: int) -> None:
    a, b = rounds(10.0, 1.05, 0.03, 3, seed=seed)
    assert compare(a, b).verdict in (PASS, CANNOT_TELL)


def test_rates_count_a_drop_as_a_slowdown() -> None:
    a, b = rounds(20.0, 1 / 1.5, 0.02, 3, seed=3)  # throughput fell by a third
    result = compare(a, b, higher_is_better=True)
    assert result.verdict == FAIL
    assert result.slowdown == pytest.approx(1.5, rel=0.1)
    assert compare(b, a, higher_is_better=True).verdict == FASTER


def test_a_noisy_metric_cannot_tell_and_says_how_many_rounds_would() -> None:
    a, b = rounds(10.0, 1.0, 0.15, 3, seed=4)
    result = compare(a, b)
    assert result.verdict == CANNOT_TELL
    assert result.rounds_needed is not None and result.rounds_needed > 3


def test_two_rounds_decide_nothing() -> None:
    result = compare([10.0, 10.1], [30.0, 30.2])
    assert result.verdict == CANNOT_TELL
    assert result.high == math.inf


def test_decide_at_the_margins() -> None:
    assert decide(1.11, 1.3) == FAIL
    assert decide(0.95, 1.09) == PASS
    assert decide(0.80, 0.90) == FASTER
    assert decide(1.05, 1.12) == CANNOT_TELL


def test_rounds_needed_grows_with_the_spread() -> None:
    tight = rounds_needed([0.00, 0.02, -0.02])
    loose = rounds_needed([0.00, 0.08, -0.08])
    assert tight is not None and loose is not None and tight < loose
    assert rounds_needed([0.0953, 0.0953]) is None  # no spread: nothing to extrapolate from


def test_inputs_must_pair_and_be_positive() -> None:
    with pytest.raises(ValueError, match="paired"):
        compare([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        compare([1.0, 0.0, 3.0], [1.0, 2.0, 3.0])
