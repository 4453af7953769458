"""Ingest into a real edge shard in tmp_path, embedding through the real mock server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.stack.services import ragload_command
from system.rag.corpus import Chunk, stdlib_chunks
from system.rag.edge_store import EdgeStore
from system.rag.errors import IndexMissing, RagError, UpstreamUnavailable
from system.rag.ingest import ingest
from system.rag.llm import LLMClient
from system.rag.settings import RagSettings
from system.rag.store import DimensionMismatch, IndexPoint
from system.rag.store_backend import index_exists, open_store, open_writer
from tests.conftest import MockServer

EXTRA = [
    Chunk(id="notes.md#0", text="A job queue decouples accepting work from doing it.", source="notes.md"),
    Chunk(id="notes.md#1", text="Tail latency is what the slowest requests see.", source="notes.md"),
]


@pytest.fixture
def settings(mock_server: MockServer, tmp_path: Path) -> RagSettings:
    return RagSettings(
        openai_base_url=mock_server.base_url,
        llm_max_retries=0,
        qdrant_url=None,
        qdrant_collection="test",
        ragload_data_dir=tmp_path / "data",
    )


@pytest.fixture(scope="module")
def corpus() -> list[Chunk]:
    return [*stdlib_chunks({"json"}), *EXTRA]


def test_ingest_twice_keeps_the_count_and_re_embeds_only_changed_text(
    settings: RagSettings, corpus: list[Chunk]
) -> None:
    first = ingest(corpus, settings)
    assert (first.before, first.after, first.embedded) == (0, len(corpus), len(corpus))

    second = ingest(corpus, settings)
    assert (second.before, second.after, second.embedded) == (len(corpus), len(corpus), 0)

    edited = [*corpus[:-1], Chunk(id=EXTRA[1].id, text="Tail latency: the p99.", source="notes.md")]
    third = ingest(edited, settings)
    assert (third.before, third.after, third.embedded) == (len(corpus), len(corpus), 1)
    vector = LLMClient(settings).embed(["Tail latency: the p99."])[0]
    assert open_store(settings).search(vector, 1)[0].text == "Tail latency: the p99."


def test_recreate_drops_what_the_corpus_no_longer_has(settings: RagSettings, corpus: list[Chunk]) -> None:
    ingest(corpus, settings)
    report = ingest(EXTRA, settings, recreate=True)
    assert (report.before, report.after) == (0, len(EXTRA))


def test_a_loaded_reader_sees_the_old_index_until_commit_then_the_new_one(
    settings: RagSettings, corpus: list[Chunk]
) -> None:
    ingest(corpus[:10], settings)
    reader = open_store(settings)
    assert reader.count() == 10

    writer = open_writer(settings)
    vectors = LLMClient(settings).embed([c.text for c in corpus[10:]])
    writer.upsert([IndexPoint(c.id, c.text, c.source, v) for c, v in zip(corpus[10:], vectors, strict=True)])
    assert reader.count() == 10  # the build in progress is invisible
    writer.commit()
    assert reader.count() == len(corpus)
    builds = sorted(p.name for p in settings.edge_shard_path.parent.glob("test.build-*"))
    assert len(builds) == 2  # the current build and the previous one; older ones are removed


def test_one_writer_at_a_time(settings: RagSettings) -> None:
    writer = open_writer(settings)
    try:
        with pytest.raises(RagError, match="another `ragload ingest`"):
            open_writer(settings)
    finally:
        writer.abort()
    assert not index_exists(settings)


def test_missing_index_is_index_missing(settings: RagSettings) -> None:
    assert not index_exists(settings)
    with pytest.raises(IndexMissing, match="ragload ingest"):
        open_store(settings)


def test_dimension_mismatch_is_refused_with_a_hint(settings: RagSettings, corpus: list[Chunk]) -> None:
    ingest(corpus, settings)
    other = settings.model_copy(update={"embed_dim": 128})
    with pytest.raises(DimensionMismatch, match=r"256-dimensional.*gives 128.*--recreate"):
        ingest(corpus, other)
    assert open_store(settings).count() == len(corpus)  # the index is untouched
    assert ingest(corpus, other, recreate=True).after == len(corpus)


def cli_env(settings: RagSettings, **changes: str) -> dict[str, str]:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": settings.openai_base_url,
        "LLM_MAX_RETRIES": "0",
        "QDRANT_URL": "",
        "QDRANT_COLLECTION": settings.qdrant_collection,
        "RAGLOAD_DATA_DIR": str(settings.ragload_data_dir),
    }
    return {**env, **changes}


def test_cli_is_idempotent_and_fails_clearly_on_a_dimension_mismatch(
    settings: RagSettings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nAlpha.\n\n# B\n\nBeta.\n", encoding="utf-8")
    command = ragload_command("ingest", "--stdlib-modules", "csv", str(docs))

    runs = [subprocess.run(command, env=cli_env(settings), capture_output=True, text=True) for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    assert "points 0 -> " in runs[0].stdout
    count = int(runs[0].stdout.split("points 0 -> ")[1].split(";")[0])
    assert f"points {count} -> {count}" in runs[1].stdout
    assert "ingest: embedded" in runs[0].stderr  # progress goes to stderr

    mismatch = subprocess.run(command, env=cli_env(settings, EMBED_DIM="64"), capture_output=True, text=True)
    assert mismatch.returncode != 0
    assert "256-dimensional" in mismatch.stderr and "--recreate" in mismatch.stderr
    assert "Traceback" not in mismatch.stderr


READER = """
import sys, random
from pathlib import Path
from system.rag.edge_store import EdgeStore
store = EdgeStore.load(Path(sys.argv[1]))
sys.stdin.readline()  # start querying together
for _ in range(300):
    assert len(store.search([random.random() for _ in range(256)], 4)) == 4
print(store.count())
"""


def test_two_processes_load_and_query_the_same_shard_at_once(
    settings: RagSettings, corpus: list[Chunk]
) -> None:
    ingest(corpus, settings)
    here = EdgeStore.load(settings.edge_shard_path)  # and this process holds it loaded as well
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(settings.edge_shard_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [reader.communicate("go\n", timeout=60) for reader in readers]
    assert [reader.returncode for reader in readers] == [0, 0], outputs
    assert [int(out) for out, _ in outputs] == [len(corpus)] * 2
    assert here.count() == len(corpus)


def test_a_failed_ingest_leaves_the_current_index_as_it_was(
    settings: RagSettings, corpus: list[Chunk], mock_server: MockServer
) -> None:
    ingest(EXTRA, settings)
    mock_server.configure(error_rate=1.0)
    with pytest.raises(UpstreamUnavailable):
        ingest(corpus, settings)
    assert open_store(settings).count() == len(EXTRA)
    assert len(list(settings.edge_shard_path.parent.glob("test.build-*"))) == 1  # the failed build is gone
