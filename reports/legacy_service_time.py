"""The service-time model of run folders written before the harness recorded it as numbers.

Since then `ragload bench` writes `service_time_model.per_request` into config.json: the mean (s) and CV² of
the configured upstream time, which is all the queueing model needs (reports/run_data.py reads it). Older
folders name the mock's latency models only as text (`lognormal:300ms,0.3`), and a report must not import
the mock (mocks/latency.py) to read them. So this module reads the five forms the mock knew then —
`const:D`, `uniform:LOW,HIGH`, `normal:MEAN,STD`, `lognormal:MEDIAN,SIGMA`, `exp:MEAN`, durations in us, ms
or s — with the same arithmetic, so that an old folder still rebuilds to the same bytes
(tests/reports/test_legacy_service_time.py checks it against the mock's parser). Nothing else uses it; it can
go once no such folder matters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from reports.queueing import ServiceModel

_SECONDS_PER_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>us|ms|s)?\s*$")
_ARGUMENTS = {"const": 1, "uniform": 2, "normal": 2, "lognormal": 2, "exp": 1}


def _seconds(text: str) -> float:
    found = _DURATION.match(text)
    if found is None or (found["unit"] is None and float(found["value"]) != 0):
        raise ValueError(f"'{text}' is not a duration")
    return float(found["value"]) * _SECONDS_PER_UNIT[found["unit"] or "s"]


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.6g}ms"


def _moments(spec: str) -> tuple[float, float, str]:
    """(mean s, variance s², canonical text) of one latency spec; ValueError if it is not one."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    args = [part.strip() for part in rest.split(",")]
    if _ARGUMENTS.get(kind) != len(args):
        raise ValueError(f"'{spec}' is not a latency spec")
    if kind == "lognormal":
        median, sigma = _seconds(args[0]), float(args[1])
        spread = math.exp(sigma**2)
        text = f"lognormal:{_milliseconds(median)},{sigma:g}"
        return median * math.exp(sigma**2 / 2), median**2 * spread * (spread - 1), text
    first = _seconds(args[0])
    if kind == "const":
        return first, 0.0, f"const:{_milliseconds(first)}"
    if kind == "exp":
        return first, first**2, f"exp:{_milliseconds(first)}"
    second = _seconds(args[1])
    text = f"{kind}:{_milliseconds(first)},{_milliseconds(second)}"
    if kind == "uniform":
        return (first + second) / 2, (second - first) ** 2 / 12, text
    return first, second**2, text  # normal (its clipping at 0 ignored, as the mock's mean does)


def service_model_from_specs(specs: Iterable[str]) -> ServiceModel:
    """The sum of independent latency models (one embeddings call and one chat call, in that order)."""
    moments = [_moments(spec) for spec in specs]
    mean = sum(mean for mean, _, _ in moments)
    variance = sum(variance for _, variance, _ in moments)
    return ServiceModel(
        mean_s=mean,
        cv2=variance / mean**2 if mean > 0 else 0.0,
        source=" + ".join(text for _, _, text in moments),
    )
