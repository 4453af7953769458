"""Per-query pipeline time at zero mock latency (benchmarks; disabled by default: each runs once as a test).

Figures: `.venv/bin/pytest tests/system/rag/test_pipeline_bench.py --benchmark-enable`
"""

from __future__ import annotations

import asyncio

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from system.rag.pipeline import get_pipeline
from system.rag.settings import RagSettings

QUESTION = "How do I serialize an object to a JSON formatted string?"


@pytest.fixture
def env_settings(rag_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RagSettings:
    for name, value in rag_env.items():
        monkeypatch.setenv(name, value)
    return RagSettings()


def test_bench_run(benchmark: BenchmarkFixture, env_settings: RagSettings) -> None:
    pipeline = get_pipeline()
    pipeline.run(QUESTION)  # warm: index loaded, connections open
    result = benchmark(pipeline.run, QUESTION)
    assert result.sources


def test_bench_arun(benchmark: BenchmarkFixture, env_settings: RagSettings) -> None:
    pipeline = get_pipeline()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(pipeline.arun(QUESTION))
        result = benchmark(lambda: loop.run_until_complete(pipeline.arun(QUESTION)))
    finally:
        loop.close()
    assert result.sources


def test_bench_get_pipeline_after_the_first_call(
    benchmark: BenchmarkFixture, env_settings: RagSettings
) -> None:
    first = get_pipeline()
    assert benchmark(get_pipeline) is first
