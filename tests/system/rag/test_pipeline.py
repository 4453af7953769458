"""The pipeline end to end: the real mock server and the real edge index built by the `rag_env` fixture."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from system.rag.errors import IndexMissing, UpstreamTimeout, UpstreamUnavailable
from system.rag.pipeline import Pipeline, get_pipeline, index_exists
from system.rag.schemas import RagResult
from system.rag.settings import RagSettings
from tests.conftest import MockServer

JSON_QUESTION = "How do I serialize an object to a JSON formatted string?"


@pytest.fixture
def env_settings(rag_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RagSettings:
    for name, value in rag_env.items():
        monkeypatch.setenv(name, value)
    return RagSettings()


def assert_answers_the_json_question(result: RagResult) -> None:
    ids = [source.id for source in result.sources]
    assert len(ids) == 4
    assert ids[0].startswith("json.") and "json.dumps#0" in ids[:2], ids
    assert result.answer.startswith("According to [1]")
    assert "JSON" in result.answer
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    timings = result.timings_ms
    assert min(timings.embed, timings.retrieve, timings.llm) > 0
    assert timings.total >= timings.embed + timings.retrieve + timings.llm - 0.01


def test_run_retrieves_json_passages_and_answers_from_them(env_settings: RagSettings) -> None:
    assert_answers_the_json_question(get_pipeline().run(JSON_QUESTION))


async def test_arun_gives_the_same_sources(env_settings: RagSettings) -> None:
    result = await get_pipeline().arun(JSON_QUESTION)
    assert_answers_the_json_question(result)
    assert [s.id for s in result.sources] == [s.id for s in get_pipeline().run(JSON_QUESTION).sources]


async def test_arun_works_on_a_second_event_loop(env_settings: RagSettings) -> None:
    """Each pytest-asyncio test has its own loop: the async client must not be reused across loops."""
    assert (await get_pipeline().arun("How do I read a CSV file?", top_k=2)).sources[0].id.startswith("csv")


def test_markdown_files_are_retrievable(env_settings: RagSettings) -> None:
    result = get_pipeline().run("What does a job queue decouple?", top_k=2)
    assert result.sources[0].id == "docs/queues.md#0"


def test_get_pipeline_is_built_once_per_process_and_settings(env_settings: RagSettings) -> None:
    pipeline = get_pipeline()
    assert get_pipeline() is pipeline is get_pipeline(env_settings)
    pipeline.check()
    assert index_exists()
    assert get_pipeline(env_settings.model_copy(update={"max_answer_tokens": 5})) is not pipeline


def _run_in_child(queue: multiprocessing.Queue[str]) -> None:
    queue.put(get_pipeline().run(JSON_QUESTION).sources[0].id)


def test_a_forked_child_builds_its_own_pipeline(env_settings: RagSettings) -> None:
    parent_first = get_pipeline().run(JSON_QUESTION).sources[0].id  # index and clients loaded in the parent
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(target=_run_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == parent_first


def test_missing_index(env_settings: RagSettings, tmp_path: Path) -> None:
    empty = env_settings.model_copy(update={"ragload_data_dir": tmp_path})
    pipeline = Pipeline(empty)
    assert not index_exists(empty)
    with pytest.raises(IndexMissing):
        pipeline.check()
    with pytest.raises(IndexMissing):
        pipeline.run(JSON_QUESTION)


def test_upstream_errors_surface_as_rag_errors(env_settings: RagSettings, mock_server: MockServer) -> None:
    mock_server.configure(error_rate=1.0)
    with pytest.raises(UpstreamUnavailable):
        get_pipeline().run(JSON_QUESTION)


async def test_upstream_errors_surface_in_arun(env_settings: RagSettings, mock_server: MockServer) -> None:
    mock_server.configure(error_rate=1.0)
    with pytest.raises(UpstreamUnavailable):
        await get_pipeline().arun(JSON_QUESTION)


def test_a_slow_upstream_is_a_timeout(env_settings: RagSettings, mock_server: MockServer) -> None:
    mock_server.configure(chat_latency="const:5s")
    impatient = Pipeline(env_settings.model_copy(update={"llm_timeout_s": 0.3}))
    with pytest.raises(UpstreamTimeout):
        impatient.run(JSON_QUESTION)


def test_top_k_out_of_range_is_refused(env_settings: RagSettings) -> None:
    with pytest.raises(ValueError, match="top_k"):
        get_pipeline().run(JSON_QUESTION, top_k=0)
