"""Which vector store backs the index: the embedded edge shard, or a Qdrant server when QDRANT_URL is set.

The one place that knows both adapters (system/rag/edge_store.py, system/rag/server_store.py); they import
system/rag/store.py for the protocols and helpers they share, never this module. The server adapter is
imported only when chosen: qdrant-client takes over a second to import and the embedded default needs none
of it.
"""

from __future__ import annotations

from system.rag.edge_store import EdgeIndexWriter, EdgeStore, shard_exists
from system.rag.settings import RagSettings
from system.rag.store import IndexWriter, VectorStore


def open_store(settings: RagSettings) -> VectorStore:
    """The store the settings point at; raises IndexMissing if there is no index yet."""
    if settings.qdrant_url:
        from system.rag.server_store import ServerStore

        return ServerStore.connect(settings)
    return EdgeStore.load(settings.edge_shard_path)


def index_exists(settings: RagSettings) -> bool:
    if settings.qdrant_url:
        from system.rag.server_store import collection_exists

        return collection_exists(settings)
    return shard_exists(settings.edge_shard_path)


def open_writer(settings: RagSettings, recreate: bool = False) -> IndexWriter:
    """A writer on the configured index; raises DimensionMismatch unless `recreate` drops the old one."""
    if settings.qdrant_url:
        from system.rag.server_store import ServerIndexWriter

        return ServerIndexWriter.open(settings, recreate=recreate)
    return EdgeIndexWriter.open(settings.edge_shard_path, settings.embed_dim, recreate=recreate)
