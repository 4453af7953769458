"""The capacity model as pure logic: step times, admission, a hand-computed timeline, and the curves."""

from __future__ import annotations

import pytest

from mocks.capacity import (
    BatchModel,
    Scheduler,
    Sequence,
    closed_loop,
    expected_curve,
    simulate,
    unloaded_latency,
)
from mocks.config import MockConfig
from mocks.latency import LatencySpec
from mocks.upstream import load_upstream

MODEL = BatchModel(max_batch=2, step_base=0.010, step_per_seq=0.001, prefill_per_token=0.0001, thrash=0.0)


def test_step_time_grows_with_the_batch_the_prefill_and_the_waiting_line() -> None:
    model = BatchModel(max_batch=4, step_base=0.010, step_per_seq=0.002, prefill_per_token=0.0001, thrash=0.5)
    assert model.step_time(1, 0, 0) == pytest.approx(0.012)
    assert model.step_time(4, 0, 0) == pytest.approx(0.018)
    assert model.step_time(4, 100, 0) == pytest.approx(0.028)
    assert model.step_time(4, 0, 4) == pytest.approx(0.018 * 1.5)  # a full batch waiting: +thrash


def test_admission_is_first_come_first_served_up_to_the_batch() -> None:
    scheduler = Scheduler(MODEL)
    calls = [Sequence(10, 2, 0.0) for _ in range(3)]
    for call in calls:
        scheduler.submit(call)
    scheduler.start_step()
    assert scheduler.running == calls[:2] and list(scheduler.waiting) == calls[2:]
    scheduler.finish_step(0.014)
    assert [c.produced for c in calls] == [1, 1, 0] and calls[0].first_token_at == 0.014


def test_a_timeline_computed_by_hand() -> None:
    # t=0: calls A and B arrive at an idle engine: step 1 admits both (prefill 20 tokens): 10 + 2 + 2 = 14 ms.
    # C arrives at 5 ms and waits (batch full). Step 2: 10 + 2 = 12 ms; A and B finish at 26 ms.
    # Step 3 admits C (prefill 10): 10 + 1 + 1 = 12 ms: C's only token at 38 ms.
    times = simulate(MODEL, [(0.0, 10, 2), (0.0, 10, 2), (0.005, 10, 1)])
    assert times == [pytest.approx((0.014, 0.026))] * 2 + [pytest.approx((0.038, 0.038))]


def test_a_call_arriving_exactly_at_a_boundary_waits_for_the_next_one() -> None:
    # As a closed-loop client's next call does: it arrives as the step that answered it ends.
    # A alone: 11 ms steps. B arrives as step 1 ends, so step 2 is A's alone again; B's step ends at 33 ms.
    times = simulate(MODEL, [(0.0, 0, 2), (0.011, 0, 1)])
    assert times == [pytest.approx((0.011, 0.022)), pytest.approx((0.033, 0.033))]


def test_expected_curve_starts_at_the_unloaded_latency_then_saturates_and_with_thrash_falls() -> None:
    model = BatchModel(max_batch=8, step_base=0.010, step_per_seq=0.001, prefill_per_token=0.0, thrash=0.0)
    alone = closed_loop(model, 1, prompt_tokens=100, output_tokens=10)
    assert alone.latency_s == pytest.approx(unloaded_latency(model, 100, 10))
    curve = expected_curve(model, [1, 4, 8, 16, 32], 100, 10)
    latencies = [p.latency_s for p in curve]
    assert latencies == sorted(latencies) and latencies[-1] > 3 * latencies[0]
    throughput = [p.calls_per_s for p in curve]
    assert throughput[2] > 4 * throughput[0]  # batching: 8 at once cost little more than one
    assert throughput[4] == pytest.approx(throughput[3], rel=0.1)  # past the batch: a ceiling
    thrashing = expected_curve(BatchModel(8, 0.010, 0.001, 0.0, thrash=1.0), [8, 32], 100, 10)
    assert thrashing[1].calls_per_s < 0.8 * thrashing[0].calls_per_s  # the goodput collapse


def test_the_vllm_like_preset_has_its_knee_at_about_twelve_rag_calls() -> None:
    """RAG-sized calls (160 prompt, 15 output tokens): throughput peaks at about 12 calls in flight and
    falls past it; time to first token grows slowly up to the knee, fast past it."""
    config = MockConfig().updated(load_upstream("vllm-like"))
    levels = [1, 4, 8, 12, 16, 24, 40]
    curve = expected_curve(config.batch_model(), levels, 160, 15, config.chat_latency)
    ttft = [p.ttft_s for p in curve]
    calls = [p.calls_per_s for p in curve]
    assert ttft[3:] == sorted(ttft[3:])  # below the knee, the sampled overhead's noise may cross
    assert ttft[3] < 1.6 * ttft[0] and ttft[-1] > 8 * ttft[0]  # slow to the knee, fast past it
    assert levels[calls.index(max(calls))] == 12
    assert calls[-1] < 0.7 * max(calls)  # falls past the knee (thrash)


def test_overhead_spec_is_sampled_deterministically() -> None:
    spec = LatencySpec.parse("lognormal:50ms,0.5")
    first = closed_loop(MODEL, 4, 10, 4, spec, seed=3)
    assert closed_loop(MODEL, 4, 10, 4, spec, seed=3) == first
    assert closed_loop(MODEL, 4, 10, 4, spec, seed=4) != first
