"""`ragload probe-upstream`: the caps it insists on, and the probe-and-fit round trip against the mock."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.stack.services import ragload_command
from loadtests.upstream.fit import Observation, fit
from loadtests.upstream.probe import plan_within
from mocks.capacity import BatchModel, simulate
from mocks.upstream import load_upstream
from tests.conftest import running_mock

# Known parameters, with times long against the scheduling noise of a machine shared with other work (a
# waking process can be tens of ms late there, and that lateness only ever adds): the overhead especially,
# which the fit reads off time to first token, where that lateness lands in full.
KNOWN = {
    "chat_latency": "const:400ms",
    "max_batch": 6,
    "step_base": "30ms",
    "step_per_seq": "10ms",
    "prefill_per_token": "0.4ms",
    "thrash": 0.5,
}
KNOWN_SECONDS = {
    "overhead": 0.400,
    "step_base": 0.030,
    "step_per_seq": 0.010,
    "prefill_per_token": 0.0004,
    "thrash": 0.5,
    "max_batch": 6,
}
# 1..12 concurrent with a batch of 6: both sides of the knee, so max_batch and thrash show; 12 streams of a
# few tokens per 50 ms step cost the mock almost nothing, so its own CPU is never what is measured.
LADDER = "1,2,3,4,6,9,12"
TOLERANCE = 0.10


def _parameters(document: dict[str, object]) -> dict[str, float]:
    from mocks.config import MockConfig

    config = MockConfig().updated(document)  # parses the durations the profile wrote
    return {
        "overhead": config.chat_latency.median,
        "step_base": config.step_base,
        "step_per_seq": config.step_per_seq,
        "prefill_per_token": config.prefill_per_token,
        "thrash": config.thrash,
        "max_batch": config.max_batch,
    }


@pytest.fixture
def known_mock() -> Iterator[str]:
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in KNOWN.items()]
    with running_mock("--capacity", "batch", *flags) as base_url:
        yield base_url


ATTEMPTS = 3  # a probe whose timings a busy machine disturbed is repeated (see the test's docstring)


def _probe_and_fit(base_url: str, out: Path) -> tuple[dict[str, float], dict[str, Any], str]:
    done = subprocess.run(
        ragload_command(
            "probe-upstream",
            *("--base-url", base_url, "--model", "gpt-4o-mini", "--api-key", "sk-test"),
            *("--max-requests", "200", "--max-seconds", "150", "--concurrency", LADDER, "--rounds", "4"),
            *("--max-tokens", "12", "--prompt-words", "40,200", "--out", str(out)),
        ),
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fitted = _parameters(load_upstream(str(out)))
    errors = {key: fitted[key] / KNOWN_SECONDS[key] - 1 for key in KNOWN_SECONDS}
    return errors, tomllib.loads(out.read_text(encoding="utf-8")), done.stdout


@pytest.mark.slow
@pytest.mark.timeout(3 * 240)
def test_probe_recovers_the_known_parameters_within_ten_percent(known_mock: str, tmp_path: Path) -> None:
    """Probe a mock of known parameters and fit: every parameter within 10 %.

    On a machine shared with other heavy work, a waking process is now and then tens of milliseconds late,
    and a probe that met many such moments can be fitted 20-40 % off in one parameter (seen here at a load
    average above 10 on 2 cores). Such a probe is repeated, up to ATTEMPTS times; the fit must come within
    10 % in one of them, and every attempt's errors are shown if none does."""
    attempts = []
    for attempt in range(ATTEMPTS):
        errors, document, stdout = _probe_and_fit(known_mock, tmp_path / f"fitted-{attempt}.toml")
        attempts.append({key: f"{error:+.1%}" for key, error in errors.items()})
        assert document["fit"]["ignore_eos"] is True
        assert [level["concurrency"] for level in document["fit"]["levels"]] == [1, 2, 3, 4, 6, 9, 12]
        if all(abs(error) <= TOLERANCE for error in errors.values()):
            break
    else:
        pytest.fail(f"no attempt came within {TOLERANCE:.0%}: {attempts}\n{stdout}")
    assert document["fit"]["max_batch_is_lower_bound"] is False


def test_the_fit_recovers_a_simulated_trace_exactly() -> None:
    """Without a network or a machine in the way (the trace made by the same scheduler), the fit finds the
    parameters almost exactly: what the live round trip loses is noise, not the method."""
    model = BatchModel(max_batch=4, step_base=0.02, step_per_seq=0.004, prefill_per_token=0.0003, thrash=0.6)
    overhead = 0.05
    calls = []
    for level, clients in enumerate((1, 2, 4, 6, 8)):
        for client in range(clients):
            for round_ in range(3):
                prompt = 30 if (client + round_) % 2 else 150
                calls.append((level, level * 5.0 + client * 0.013 + round_ * 1.1, prompt, 8))
    times = simulate(model, [(sent + overhead, prompt, out) for _, sent, prompt, out in calls])
    observations = [
        Observation((1, 2, 4, 6, 8)[level], sent, first, last, prompt, out)
        for (level, sent, prompt, out), (first, last) in zip(calls, times, strict=True)
    ]
    fitted = fit(observations).parameters()
    truth = {"overhead": overhead, "step_base": 0.02, "step_per_seq": 0.004, "prefill_per_token": 0.0003}
    for key, value in truth.items():
        assert fitted[key] == pytest.approx(value, rel=0.02), key
    assert fitted["max_batch"] == 4
    assert fitted["thrash"] == pytest.approx(0.6, rel=0.05)


def test_it_refuses_to_run_without_caps_on_requests_and_time() -> None:
    for missing in ("--max-requests", "--max-seconds"):
        argv = [
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--max-requests",
            "10",
            "--max-seconds",
            "5",
        ]
        index = argv.index(missing)
        del argv[index : index + 2]
        done = subprocess.run(
            ragload_command("probe-upstream", *argv), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2
        assert missing in done.stderr and "required" in done.stderr
    done = subprocess.run(
        ragload_command(
            "probe-upstream",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--max-requests",
            "0",
            "--max-seconds",
            "5",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "must be above 0" in done.stderr


def test_the_ladder_is_cut_to_the_request_cap() -> None:
    assert plan_within([1, 2, 4, 8], rounds=3, max_requests=100) == [1, 2, 4, 8]
    assert plan_within([1, 2, 4, 8], rounds=3, max_requests=30) == [1, 2, 4]
    assert plan_within([4, 8], rounds=3, max_requests=5) == []
