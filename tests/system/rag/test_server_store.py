"""The qdrant-client adapter, on qdrant-client's local mode (the same API as a Qdrant server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from system.rag import server_store
from system.rag.corpus import Chunk, stdlib_chunks
from system.rag.errors import IndexMissing
from system.rag.ingest import ingest
from system.rag.pipeline import Pipeline
from system.rag.server_store import ServerIndexWriter, ServerStore
from system.rag.settings import RagSettings
from system.rag.store import DimensionMismatch, IndexPoint
from system.rag.store_backend import index_exists, open_store
from tests.conftest import MockServer


def unit(i: int, dim: int = 4) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(dim)]


def test_writer_and_store_round_trip_in_memory() -> None:
    client = QdrantClient(":memory:")
    writer = ServerIndexWriter(client, "c", 4)
    points = [IndexPoint(f"doc#{i}", f"text {i}", "doc", unit(i)) for i in range(4)]
    writer.upsert(points)
    writer.upsert(points)  # same chunk ids, same points
    assert writer.count() == 4
    assert writer.digests(["doc#1", "doc#9"]) == {"doc#1": points[1].payload["digest"]}
    writer.commit()

    store = ServerStore(client, "c")
    found = store.search(unit(2), 2)
    assert found[0].id == "doc#2" and found[0].text == "text 2" and found[0].score == pytest.approx(1.0)
    assert store.count() == 4


def test_dimension_mismatch_and_recreate() -> None:
    client = QdrantClient(":memory:")
    ServerIndexWriter(client, "c", 4).upsert([IndexPoint("a#0", "a", "a", unit(0))])
    with pytest.raises(DimensionMismatch, match="4-dimensional.*gives 8.*--recreate"):
        ServerIndexWriter(client, "c", 8)
    assert ServerIndexWriter(client, "c", 8, recreate=True).count() == 0


@pytest.fixture
def local_qdrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every client the adapter makes opens one local-mode folder (one at a time: it locks the folder)."""
    monkeypatch.setattr(
        server_store, "make_client", lambda settings: QdrantClient(path=str(tmp_path / "qdrant"))
    )
    yield


def test_ingest_and_pipeline_through_the_server_adapter(local_qdrant: None, mock_server: MockServer) -> None:
    settings = RagSettings(
        openai_base_url=mock_server.base_url, llm_max_retries=0, qdrant_url="http://qdrant.invalid:6333"
    )
    assert not index_exists(settings)
    with pytest.raises(IndexMissing):
        open_store(settings)

    corpus: list[Chunk] = list(stdlib_chunks({"json", "csv"}))
    first, second = ingest(corpus, settings), ingest(corpus, settings)
    assert (first.before, first.after, second.after, second.embedded) == (0, len(corpus), len(corpus), 0)

    assert index_exists(settings)
    store = open_store(settings)
    assert isinstance(store, ServerStore)
    try:
        result = Pipeline(settings, store=store).run(
            "How do I serialize an object to a JSON formatted string?"
        )
    finally:
        store.close()
    assert "json.dumps#0" in [source.id for source in result.sources[:2]]
