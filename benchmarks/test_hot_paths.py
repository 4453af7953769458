"""Micro-benchmarks of the hot paths, compared by the regression gate with the same benchmarks of the base.

`ragload bench-ci` (loadtests/gate/) runs this file on both revisions in turn, several rounds, and compares
each benchmark's figure by its name (reports/gate/). It times our own code in CPU seconds of this process
(`--benchmark-timer=time.process_time`: what else the machine runs does not count), except the benchmarks
with `mock` in their name, which time the mock server from outside and run in wall time. A benchmark whose
meaning changes gets a new name: the gate would otherwise compare two different things.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pytest_benchmark.fixture import BenchmarkFixture

from loadtests.sweep.profile import Cell
from loadtests.sweep.samples import Sample, read_samples, write_samples
from loadtests.sweep.summary import summarize
from sync_baseline.app import create_app as create_baseline
from sync_baseline.settings import BaselineSettings, Mode
from system.broker import AsyncBroker
from system.jobs import process_query
from system.rag.pipeline import get_pipeline
from system.rag.settings import RagSettings
from system.settings import SystemSettings
from tests.conftest import MockServer

QUESTION = "How do I serialize an object to a JSON formatted string?"
REFERENCE_LOOP_N = 50_000  # a pure-Python loop of about the same order as the paths measured (~ms)
MOCK_CONFIGURED_MS = 50  # long against the mock's own handling (~1 ms), short enough for ~20 rounds a second
SYNTHETIC_SAMPLES = 5_000  # about one default-profile cell at its busiest


def cpu_reference_loop() -> int:
    return sum(i * i % 7 for i in range(REFERENCE_LOOP_N))


def test_cpu_reference(benchmark: BenchmarkFixture) -> None:
    assert benchmark(cpu_reference_loop) == cpu_reference_loop()


# ---- the queue: what POST /chat and GET /job-status do against Valkey -------------------------------------


@pytest.fixture
def broker(redis_url: str) -> Iterator[AsyncBroker]:
    yield AsyncBroker(SystemSettings(redis_url=redis_url, queue_name="bench"))


def test_enqueue_and_status(benchmark: BenchmarkFixture, broker: AsyncBroker) -> None:
    loop = asyncio.new_event_loop()
    counter = iter(range(10**9))

    async def submit_then_read() -> str:
        job_id = f"bench-{next(counter)}"
        await broker.enqueue(job_id, QUESTION, 4)
        snapshot = await broker.snapshot(job_id)
        assert snapshot is not None
        return snapshot.job.get_status(refresh=False) or ""

    try:
        status = benchmark(lambda: loop.run_until_complete(submit_then_read()))
        loop.run_until_complete(broker.aclose())
    finally:
        loop.close()
    assert status == "queued"


# ---- the pipeline and the job at zero upstream latency (the real mock process, a real index) -------------


def test_pipeline_inline(benchmark: BenchmarkFixture, env_settings: RagSettings) -> None:
    pipeline = get_pipeline()
    pipeline.run(QUESTION)  # warm: index loaded, connections open
    result = benchmark(pipeline.run, QUESTION)
    assert result.sources and result.answer.startswith("According to [1]")


def test_job_process_query(benchmark: BenchmarkFixture, env_settings: RagSettings) -> None:
    """The RQ job's own body (outside a worker): the pipeline plus what the job adds around it."""
    process_query(QUESTION, 4)
    result = benchmark(process_query, QUESTION, 4)
    assert result["sources"] and result["answer"].startswith("According to [1]")


def test_baseline_request(benchmark: BenchmarkFixture, env_settings: RagSettings) -> None:
    """One POST /chat through the inline baseline's app in this process (threadpool mode): routing,
    validation, the deadline and metrics middleware, the pipeline in a worker thread, the response."""
    app = create_baseline(BaselineSettings(mode=Mode.THREADPOOL, threads=4))
    body = {"query": QUESTION, "top_k": 4}
    with TestClient(app) as client:
        client.post("/chat", json=body).raise_for_status()
        response = benchmark(client.post, "/chat", json=body)
    assert response.status_code == 200 and response.json()["answer"].startswith("According to [1]")


# ---- the mock: handling cost, and how far it overshoots a configured latency -----------------------------


def _chat_body() -> dict[str, object]:
    context = "\n".join(f"[{i}] (source: doc#{i}) Passage {i} about JSON encoding." for i in range(1, 5))
    return {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": f"Context:\n{context}\n\nQuestion: {QUESTION}"}],
        "max_tokens": 64,
    }


def test_mock_chat(benchmark: BenchmarkFixture, mock_server: MockServer) -> None:
    with httpx.Client(base_url=mock_server.base_url, timeout=10) as client:
        client.post("/chat/completions", json=_chat_body()).raise_for_status()
        response = benchmark(client.post, "/chat/completions", json=_chat_body())
    assert response.status_code == 200


def test_mock_chat_at_configured_latency(benchmark: BenchmarkFixture, mock_server: MockServer) -> None:
    mock_server.configure(chat_latency=f"const:{MOCK_CONFIGURED_MS}ms")
    benchmark.extra_info["configured_ms"] = MOCK_CONFIGURED_MS
    with httpx.Client(base_url=mock_server.base_url, timeout=10) as client:
        client.post("/chat/completions", json=_chat_body()).raise_for_status()
        response = benchmark(client.post, "/chat/completions", json=_chat_body())
    assert response.status_code == 200


# ---- the summary of one cell, from its samples file ------------------------------------------------------


def synthetic_samples(count: int, seed: int = 7) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        latency = rng.lognormvariate(5.6, 0.5)
        outcome = "timeout" if latency > 5000 else "ok"
        samples.append(
            Sample(
                t=3 + 10 * i / count,
                architecture="queued",
                mode="longpoll",
                kind="e2e" if i % 10 else "probe",
                latency_ms=latency,
                outcome=outcome,
                status=200,
                queue_wait_ms=latency * 0.6,
                run_ms=latency * 0.4,
                polls=1,
            )
        )
    return samples


def test_summary(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    write_samples(path, synthetic_samples(SYNTHETIC_SAMPLES))
    cell = Cell(
        index=1,
        cell_id="01-queued-longpoll-closed-w4-u12",
        architecture="queued",
        mode="longpoll",
        load="closed",
        workers=4,
        users=12,
        rate=None,
        warmup_s=3,
        duration_s=10,
        deadline_s=5,
        service_time_ms=261.3,
    )
    row = benchmark(lambda: summarize(cell, read_samples(path)))
    assert row["requests"] == SYNTHETIC_SAMPLES * 9 // 10
