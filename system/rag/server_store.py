"""The vector store on a Qdrant server (QDRANT_URL set), through qdrant-client.

The same adapter works on any QdrantClient: tests hand it one in local mode (`QdrantClient(":memory:")`).
qdrant-client talks HTTP with `httpx`; its errors are mapped here to the RAG core's errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from qdrant_client.models import Distance, PointStruct, VectorParams

from system.rag.errors import IndexMissing, RagError, UpstreamTimeout, UpstreamUnavailable
from system.rag.llm import parse_retry_after
from system.rag.schemas import Source
from system.rag.settings import RagSettings
from system.rag.store import IndexPoint, dimension_error, point_id, source_from_payload

SEARCH_PAYLOAD = ["chunk_id", "text"]
DIGEST_PAYLOAD = ["chunk_id", "digest"]
CONNECT_TIMEOUT_S = 5  # qdrant-client's timeout is whole seconds


@contextmanager
def qdrant_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ResponseHandlingException as exc:
        if isinstance(exc.source, httpx.TimeoutException):
            raise UpstreamTimeout(f"{what}: Qdrant did not answer in time") from exc
        raise UpstreamUnavailable(f"{what}: cannot reach Qdrant ({exc.source})") from exc
    except UnexpectedResponse as exc:
        status = exc.status_code or 0
        if status == 429 or status >= 500:
            raise UpstreamUnavailable(
                f"{what}: Qdrant failed ({status})", parse_retry_after(exc.headers)
            ) from exc
        if status == 404:
            raise IndexMissing(f"{what}: the collection does not exist; run `ragload ingest`") from exc
        raise RagError(f"{what}: Qdrant rejected the request ({exc})") from exc


def make_client(settings: RagSettings) -> QdrantClient:
    """No request is made here: qdrant-client connects on first use."""
    return QdrantClient(
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key,
        timeout=max(CONNECT_TIMEOUT_S, int(settings.llm_timeout_s)),
    )


def collection_exists(settings: RagSettings) -> bool:
    client = make_client(settings)
    try:
        with qdrant_errors("index check"):
            return bool(client.collection_exists(settings.qdrant_collection))
    finally:
        client.close()


def collection_dimension(client: QdrantClient, collection: str) -> int | None:
    vectors = client.get_collection(collection).config.params.vectors
    return vectors.size if isinstance(vectors, VectorParams) else None


class ServerStore:
    """Read side. QdrantClient is thread-safe (one httpx connection pool)."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self._client = client
        self._collection = collection

    @classmethod
    def connect(cls, settings: RagSettings) -> ServerStore:
        client = make_client(settings)
        with qdrant_errors("index load"):
            if not client.collection_exists(settings.qdrant_collection):
                client.close()
                where = f"{settings.qdrant_collection!r} on {settings.qdrant_url}"
                raise IndexMissing(f"no collection {where}: run `ragload ingest`")
        return cls(client, settings.qdrant_collection)

    def search(self, vector: Sequence[float], top_k: int) -> list[Source]:
        with qdrant_errors("vector search"):
            response = self._client.query_points(
                self._collection, query=list(vector), limit=top_k, with_payload=SEARCH_PAYLOAD
            )
        return [source_from_payload(point.payload, point.score) for point in response.points]

    def count(self) -> int:
        with qdrant_errors("count"):
            return int(self._client.count(self._collection, exact=True).count)

    def close(self) -> None:
        self._client.close()


class ServerIndexWriter:
    """Write side: creates the collection if needed and upserts into it (points are visible as they land)."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        dimension: int,
        recreate: bool = False,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._collection = collection
        self._owns_client = owns_client
        with qdrant_errors("index open"):
            if recreate and client.collection_exists(collection):
                client.delete_collection(collection)
            if not client.collection_exists(collection):
                client.create_collection(collection, VectorParams(size=dimension, distance=Distance.COSINE))
            found = collection_dimension(client, collection)
        if found is not None and found != dimension:
            raise dimension_error(f"{collection!r}", found, dimension)

    @classmethod
    def open(cls, settings: RagSettings, recreate: bool = False) -> ServerIndexWriter:
        client = make_client(settings)
        try:
            return cls(
                client, settings.qdrant_collection, settings.embed_dim, recreate=recreate, owns_client=True
            )
        except BaseException:
            client.close()
            raise

    @property
    def location(self) -> str:
        return f"{self._collection!r} on Qdrant"

    def count(self) -> int:
        with qdrant_errors("count"):
            return int(self._client.count(self._collection, exact=True).count)

    def digests(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        with qdrant_errors("digest lookup"):
            records = self._client.retrieve(
                self._collection, ids=[point_id(c) for c in chunk_ids], with_payload=DIGEST_PAYLOAD
            )
        found = (record.payload or {} for record in records)
        return {str(p["chunk_id"]): str(p.get("digest", "")) for p in found if "chunk_id" in p}

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        structs = [PointStruct(id=p.point_id, vector=list(p.vector), payload=p.payload) for p in points]
        with qdrant_errors("upsert"):
            self._client.upsert(self._collection, points=structs, wait=True)

    def commit(self) -> None:
        self._release()

    def abort(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._owns_client:
            self._client.close()
