"""Latency specs: parsing, canonical text, and samples matching their distribution (the sampler, no clock)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from mocks.latency import LatencySpec, parse_duration

SAMPLES = 4000  # the median of an exponential needs a few thousand draws to settle within a few per cent


@pytest.mark.parametrize(
    ("text", "seconds"), [("200ms", 0.2), ("1.5s", 1.5), ("800us", 0.0008), ("0", 0.0), (" 5 ms ", 0.005)]
)
def test_durations_parse_with_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("200ms", "KIND:ARGS"),
        ("gamma:1s", "unknown latency distribution 'gamma'"),
        ("const:200", "needs a unit"),
        ("uniform:300ms", "takes 2 argument"),
        ("uniform:300ms,100ms", "LOW <= HIGH"),
        ("lognormal:800ms,abc", "sigma must be a plain number"),
        ("lognormal:0ms,0.5", "MEDIAN > 0"),
        ("exp:0ms", "mean above 0"),
        ("const:2h", "not a duration"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LatencySpec.parse(spec)


@pytest.mark.parametrize(
    "spec",
    ["const:0ms", "const:200ms", "uniform:100ms,300ms", "normal:500ms,50ms", "lognormal:800ms,0.5", "exp:1s"],
)
def test_text_form_round_trips(spec: str) -> None:
    parsed = LatencySpec.parse(spec)
    assert LatencySpec.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    "spec", ["const:200ms", "uniform:100ms,300ms", "normal:500ms,100ms", "lognormal:800ms,0.5", "exp:1s"]
)
def test_sample_median_mean_and_variance_match_the_spec(spec: str) -> None:
    """`mean` and `variance` are also what the harness writes into a run folder for the queueing model."""
    model = LatencySpec.parse(spec)
    rng = random.Random(7)
    samples = [model.sample(rng) for _ in range(SAMPLES)]
    assert statistics.median(samples) == pytest.approx(model.median, rel=0.05)
    assert statistics.fmean(samples) == pytest.approx(model.mean, rel=0.05)
    assert statistics.pvariance(samples) == pytest.approx(model.variance, rel=0.15, abs=1e-12)
    assert min(samples) >= 0.0


def test_sample_shapes_match_the_spec() -> None:
    rng = random.Random(11)
    uniform = [LatencySpec.parse("uniform:100ms,300ms").sample(rng) for _ in range(SAMPLES)]
    assert 0.1 <= min(uniform) < 0.11 and 0.29 < max(uniform) <= 0.3
    normal = [LatencySpec.parse("normal:500ms,100ms").sample(rng) for _ in range(SAMPLES)]
    assert statistics.stdev(normal) == pytest.approx(0.1, rel=0.1)
    lognormal = [LatencySpec.parse("lognormal:800ms,0.5").sample(rng) for _ in range(SAMPLES)]
    assert statistics.stdev(math.log(x) for x in lognormal) == pytest.approx(0.5, rel=0.1)
    exp = [LatencySpec.parse("exp:1s").sample(rng) for _ in range(SAMPLES)]
    assert statistics.mean(exp) == pytest.approx(1.0, rel=0.1)


def test_same_seed_same_draws() -> None:
    model = LatencySpec.parse("lognormal:400ms,0.5")
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert [model.sample(rng_a) for _ in range(50)] == [model.sample(rng_b) for _ in range(50)]
