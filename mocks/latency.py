"""Latency models: a textual spec (`lognormal:400ms,0.5`) parsed into a seedable sampler.

Grammar, durations with a unit (`us`, `ms`, `s`; a bare `0` is allowed):
- `const:D`                 always D
- `uniform:LOW,HIGH`        uniform between LOW and HIGH
- `normal:MEAN,STD`         Gaussian, clipped at 0
- `lognormal:MEDIAN,SIGMA`  log-normal with that median; SIGMA is the std of log(latency), unitless
- `exp:MEAN`                exponential with that mean (median = MEAN * ln 2)

`sample(rng)` draws from a `random.Random` (Mersenne Twister): well under a microsecond, the same sequence for
a given seed on every machine. `quantile(u)` turns a given uniform into a latency by the inverse CDF: the
mock uses it with a uniform derived from the request (mocks/draws.py), so a draw belongs to the request and
not to its place in the order of arrivals.
"""

from __future__ import annotations

import argparse
import math
import random
import re
from dataclasses import dataclass
from statistics import NormalDist

DISTRIBUTIONS: dict[str, int] = {"const": 1, "uniform": 2, "normal": 2, "lognormal": 2, "exp": 1}
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>us|ms|s)?\s*$")
MAX_LATENCY_S = 3600.0  # anything longer is a typo, not a latency model
_STANDARD_NORMAL = NormalDist()


def parse_duration(text: str) -> float:
    """`200ms` -> 0.2 (seconds). A unit is required except for 0."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a duration (expected e.g. 200ms, 1.5s, 800us)")
    value = float(match["value"])
    unit = match["unit"]
    if unit is None:
        if value != 0:
            raise ValueError(f"duration '{text.strip()}' needs a unit: us, ms or s (e.g. {text.strip()}ms)")
        unit = "s"
    seconds = value * _UNIT_SECONDS[unit]
    if seconds > MAX_LATENCY_S:
        raise ValueError(f"duration '{text.strip()}' is longer than {MAX_LATENCY_S:.0f} s")
    return seconds


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:.6g}ms"


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """One latency model. `a` and `b` are seconds, except `b` of lognormal, which is sigma."""

    kind: str
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> LatencySpec:
        kind, sep, rest = spec.strip().partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise ValueError(
                f"latency spec '{spec}' needs the form KIND:ARGS, e.g. const:200ms or lognormal:400ms,0.5"
            )
        if kind not in DISTRIBUTIONS:
            known = ", ".join(DISTRIBUTIONS)
            raise ValueError(f"unknown latency distribution '{kind}' in '{spec}' (expected one of: {known})")
        args = [part.strip() for part in rest.split(",")]
        if len(args) != DISTRIBUTIONS[kind]:
            raise ValueError(f"'{kind}' takes {DISTRIBUTIONS[kind]} argument(s), got {len(args)} in '{spec}'")
        if kind == "lognormal":
            return cls._lognormal(args[0], args[1], spec)
        values = [parse_duration(arg) for arg in args]
        if kind == "uniform" and values[0] > values[1]:
            raise ValueError(f"uniform needs LOW <= HIGH, got '{spec}'")
        if kind == "exp" and values[0] <= 0:
            raise ValueError(f"exp needs a mean above 0, got '{spec}'")
        return cls(kind, values[0], values[1] if len(values) > 1 else 0.0)

    @classmethod
    def _lognormal(cls, median_text: str, sigma_text: str, spec: str) -> LatencySpec:
        median = parse_duration(median_text)
        try:
            sigma = float(sigma_text)
        except ValueError:
            raise ValueError(
                f"lognormal sigma must be a plain number (e.g. 0.5), got '{sigma_text}'"
            ) from None
        if median <= 0 or not 0 <= sigma <= 5:
            raise ValueError(f"lognormal needs MEDIAN > 0 and 0 <= SIGMA <= 5, got '{spec}'")
        return cls("lognormal", median, sigma)

    def __str__(self) -> str:
        if self.kind == "lognormal":
            return f"lognormal:{format_duration(self.a)},{self.b:g}"
        if DISTRIBUTIONS[self.kind] == 1:
            return f"{self.kind}:{format_duration(self.a)}"
        return f"{self.kind}:{format_duration(self.a)},{format_duration(self.b)}"

    @property
    def median(self) -> float:
        """The distribution's median in seconds (what a test compares a sample's median with)."""
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "exp":
            return self.a * math.log(2)
        return self.a

    @property
    def mean(self) -> float:
        """Mean in seconds (the clipping of `normal` at 0 is ignored)."""
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "lognormal":
            return self.a * math.exp(self.b**2 / 2)
        return self.a

    @property
    def variance(self) -> float:
        """Variance in seconds² (the clipping of `normal` at 0 is ignored, as in `mean`)."""
        if self.kind == "const":
            return 0.0
        if self.kind == "uniform":
            return (self.b - self.a) ** 2 / 12
        if self.kind == "normal":
            return self.b**2
        if self.kind == "lognormal":
            sigma2 = self.b**2
            return self.a**2 * math.exp(sigma2) * (math.exp(sigma2) - 1)
        return self.a**2  # exp: variance = mean²

    def sample(self, rng: random.Random) -> float:
        """One latency in seconds, never negative."""
        kind = self.kind
        if kind == "const":
            return self.a
        if kind == "uniform":
            return rng.uniform(self.a, self.b)
        if kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        if kind == "lognormal":
            return min(MAX_LATENCY_S, self.a * math.exp(rng.gauss(0.0, self.b)))
        return min(MAX_LATENCY_S, rng.expovariate(1.0 / self.a))

    def quantile(self, u: float) -> float:
        """The latency at cumulative probability `u` (0 < u < 1), in seconds, never negative."""
        kind = self.kind
        if kind == "const":
            return self.a
        if kind == "uniform":
            return self.a + (self.b - self.a) * u
        if kind == "normal":
            return max(0.0, self.a + self.b * _STANDARD_NORMAL.inv_cdf(u))
        if kind == "lognormal":
            return min(MAX_LATENCY_S, self.a * math.exp(self.b * _STANDARD_NORMAL.inv_cdf(u)))
        return min(MAX_LATENCY_S, -self.a * math.log1p(-u))


def latency_spec(text: str) -> LatencySpec:
    """argparse `type=`: a bad spec becomes a clear usage error."""
    try:
        return LatencySpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
