"""The vector store seen by the pipeline and by ingest, whichever Qdrant is behind it.

Two adapters implement these protocols: `edge_store` (qdrant-edge-py, the embedded default: a shard on
disk loaded read-only by every process) and `server_store` (qdrant-client, when QDRANT_URL is set); both
import this module for the helpers they share, and `store_backend` picks one from the settings. Nothing
outside these modules knows which one is in use.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from system.rag.errors import RagError
from system.rag.schemas import Source

# Point ids are uuid5(chunk id) in this namespace: the same chunk always lands on the same point.
CHUNK_NAMESPACE = uuid.UUID("4f6c2a4e-8d1b-5c7e-9a3f-2b6d8e0c1a57")


class DimensionMismatch(RagError):
    """The index holds vectors of another size than the embedding model gives."""


@dataclass(frozen=True)
class IndexPoint:
    """One chunk, embedded, ready to be written."""

    chunk_id: str
    text: str
    source: str
    vector: Sequence[float]

    @property
    def point_id(self) -> str:
        return point_id(self.chunk_id)

    @property
    def payload(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "text": self.text,
            "source": self.source,
            "digest": digest(self.text),
        }


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, chunk_id))


def digest(text: str) -> str:
    """Content hash kept in the payload: ingest skips chunks whose text did not change."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def source_from_payload(payload: Mapping[str, Any] | None, score: float) -> Source:
    payload = payload or {}
    return Source(id=str(payload.get("chunk_id", "")), text=str(payload.get("text", "")), score=float(score))


def dimension_error(where: str, found: int, wanted: int) -> DimensionMismatch:
    return DimensionMismatch(
        f"the index {where} holds {found}-dimensional vectors, but the embedding model gives {wanted} "
        f"(EMBED_DIM={wanted}). Rebuild it with `ragload ingest --recreate`, or set EMBED_DIM={found}."
    )


class VectorStore(Protocol):
    """Read side, used by the pipeline. `search` is sync: the async pipeline offloads it to a thread."""

    def search(self, vector: Sequence[float], top_k: int) -> list[Source]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class IndexWriter(Protocol):
    """Write side, used by ingest. Nothing written is visible to readers before `commit()`
    (edge: a new shard swapped in atomically; server: upserts are visible as they land)."""

    @property
    def location(self) -> str: ...

    def count(self) -> int: ...

    def digests(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        """chunk id -> content digest of the chunks already in the index, among `chunk_ids`."""
        ...

    def upsert(self, points: Sequence[IndexPoint]) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...
