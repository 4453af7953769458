"""The service-time model a report reads from a run folder: numbers written by the harness, or (older
folders) the mock's latency specs read by reports/legacy_service_time.py, to the same bits as before."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loadtests.sweep.profile import MockSettings
from mocks.latency import LatencySpec
from reports.legacy_service_time import service_model_from_specs
from reports.run_data import RunData

SPECS = [
    "const:0ms",
    "const:10ms",
    "const:2ms",
    "uniform:100ms,300ms",
    "normal:500ms,50ms",
    "lognormal:300ms,0.3",
    "lognormal:15ms,0.3",
    "lognormal:0.3s,0.25",
    "LogNormal: 400ms , 0.5",
    "exp:1s",
    "exp:800us",
    "const:1.5e2ms",
]


def test_service_model_from_latency_specs() -> None:
    model = service_model_from_specs(["const:10ms", "lognormal:300ms,0.25"])
    lognormal_mean = 0.3 * math.exp(0.25**2 / 2)
    lognormal_var = 0.3**2 * math.exp(0.25**2) * (math.exp(0.25**2) - 1)
    assert model.mean_s == pytest.approx(0.01 + lognormal_mean)
    assert model.cv2 == pytest.approx(lognormal_var / (0.01 + lognormal_mean) ** 2)
    assert model.source == "const:10ms + lognormal:300ms,0.25"
    assert service_model_from_specs(["exp:200ms"]).cv2 == pytest.approx(1.0)
    assert service_model_from_specs(["const:200ms"]).cv2 == 0.0


@pytest.mark.parametrize("spec", SPECS)
def test_legacy_reading_is_the_mocks_arithmetic_to_the_bit(spec: str) -> None:
    mock = LatencySpec.parse(spec)
    legacy = service_model_from_specs([spec])
    assert legacy.mean_s == mock.mean  # exact: an old folder must rebuild to the same bytes
    assert legacy.source == str(mock)
    assert legacy.cv2 == (mock.variance / mock.mean**2 if mock.mean > 0 else 0.0)


@pytest.mark.parametrize("spec", ["200ms", "gamma:1s", "const:200", "uniform:300ms", "const:abc"])
def test_legacy_reading_refuses_what_is_no_spec(spec: str) -> None:
    with pytest.raises(ValueError):
        service_model_from_specs([spec])


@pytest.mark.parametrize(
    ("chat", "embed"),
    [
        ("lognormal:300ms,0.3", "lognormal:15ms,0.3"),
        ("const:20ms", "const:2ms"),
        ("exp:1s", "uniform:0ms,4ms"),
    ],
)
def test_harness_numbers_equal_the_legacy_reading(chat: str, embed: str, tmp_path: Path) -> None:
    """A new folder (numbers) and an old one (specs only) give the report the same model, bit for bit."""
    numbers = MockSettings(chat_latency=chat, embed_latency=embed).service_time_numbers()
    config = json.loads(json.dumps({"service_time_model": numbers}))  # as config.json stores them
    new = RunData(tmp_path, config, {}, []).service_model()
    old = RunData(tmp_path, {"resolved": {"mock": {"chat_latency": chat, "embed_latency": embed}}}, {}, [])
    assert new == old.service_model() == service_model_from_specs([embed, chat])


def test_recorded_numbers_win_over_the_specs(tmp_path: Path) -> None:
    per_request = {"model": "as recorded", "mean_s": 0.25, "cv2": 0.5}
    config = {"mock": {"chat_latency": "const:1s"}, "service_time_model": {"per_request": per_request}}
    model = RunData(tmp_path, config, {}, []).service_model()
    assert model is not None and (model.mean_s, model.cv2, model.source) == (0.25, 0.5, "as recorded")
