"""The embedded vector store: a qdrant-edge-py shard on disk, built by ingest, loaded by every process.

Layout under `<data_dir>/index/`:
    <collection>                    symlink -> the current build (replaced atomically by `os.replace`)
    <collection>.build-<ts>-<rand>  one complete shard per ingest run; the current and the previous are kept
    .<collection>.lock              held by the one ingest allowed to write at a time

A shard written with `wal_enabled=False` can be loaded by many processes at once. A reader never sees
a half-written index: ingest writes a new build next to the current one and swaps the symlink only when
the build is flushed and optimized. A loaded reader notices the swap (one `readlink` per search) and
loads the new build.

qdrant-edge-py raises plain `Exception` for every failure, so that is what this module catches, around
single calls only.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    UpdateOperation,
)

from system.rag.errors import IndexMissing, RagError
from system.rag.schemas import Source
from system.rag.store import IndexPoint, dimension_error, point_id, source_from_payload

SEARCH_THREADS = 1  # each process searches on one thread: many processes share the 2-4 cores of a host
SEARCH_PAYLOAD = ["chunk_id", "text"]


def shard_exists(link: Path) -> bool:
    return link.is_dir()


def _shard_dimension(shard: EdgeShard) -> int | None:
    """The vector size of the stored points (None when the shard is empty)."""
    records, _ = shard.scroll(ScrollRequest(limit=1, with_vector=True))
    if not records or not isinstance(records[0].vector, list):
        return None
    return len(records[0].vector)


class EdgeStore:
    """Read side. Thread-safe: the shard answers concurrent queries; a reload swaps one reference."""

    def __init__(self, link: Path, target: str, shard: EdgeShard) -> None:
        self._link = link
        self._target = target
        self._shard = shard
        self._dimension = _shard_dimension(shard)
        self._reload_lock = threading.Lock()

    @classmethod
    def load(cls, link: Path) -> EdgeStore:
        target = _read_target(link)
        return cls(link, target, _load_shard(link, target))

    @property
    def location(self) -> str:
        return str(self._link)

    def search(self, vector: Sequence[float], top_k: int) -> list[Source]:
        shard = self._current_shard()
        if self._dimension is not None and len(vector) != self._dimension:
            raise dimension_error(f"at {self._link}", self._dimension, len(vector))
        request = QueryRequest(limit=top_k, query=Query.Nearest(list(vector)), with_payload=SEARCH_PAYLOAD)
        try:
            points = shard.query(request)
        except Exception as exc:  # qdrant-edge raises plain Exception
            raise RagError(f"vector search failed on {self._link}: {exc}") from exc
        return [source_from_payload(point.payload, point.score) for point in points]

    def count(self) -> int:
        return int(self._current_shard().count(CountRequest(exact=True)))

    def close(self) -> None:
        """Drop the reference; the shard is never closed here (close() writes to disk, readers must not)."""

    def _current_shard(self) -> EdgeShard:
        target = _read_target(self._link)
        if target == self._target:
            return self._shard
        with self._reload_lock:
            if target != self._target:
                self._shard = _load_shard(self._link, target)
                self._dimension = _shard_dimension(self._shard)
                self._target = target
        return self._shard


def _read_target(link: Path) -> str:
    """The build the link points at now (the folder itself if it is a plain folder)."""
    try:
        return os.readlink(link) if link.is_symlink() else str(link)
    except FileNotFoundError:
        pass
    raise IndexMissing(f"no index at {link}: run `ragload ingest` first")


def _load_shard(link: Path, target: str) -> EdgeShard:
    path = (link.parent / target).resolve()
    if not path.is_dir():
        raise IndexMissing(f"no index at {link}: run `ragload ingest` first")
    try:
        return EdgeShard.load(str(path))
    except Exception as exc:  # qdrant-edge raises plain Exception
        raise RagError(
            f"cannot load the index at {path}: {exc}; rebuild it with `ragload ingest --recreate`"
        ) from exc


class EdgeIndexWriter:
    """Write side: copies the current build (or starts empty), writes into the copy, swaps it in on commit."""

    def __init__(self, link: Path, build: Path, shard: EdgeShard, lock: IO[str]) -> None:
        self._link = link
        self._build = build
        self._shard = shard
        self._lock = lock

    @classmethod
    def open(cls, link: Path, dimension: int, recreate: bool = False) -> EdgeIndexWriter:
        link.parent.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(link)
        build = link.parent / f"{link.name}.build-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        try:
            shard = _start_build(link, build, dimension, recreate)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            lock.close()
            raise
        return cls(link, build, shard, lock)

    @property
    def location(self) -> str:
        return str(self._link)

    def count(self) -> int:
        return int(self._shard.count(CountRequest(exact=True)))

    def digests(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        records = self._shard.retrieve([point_id(c) for c in chunk_ids], with_payload=True, with_vector=False)
        found = (record.payload or {} for record in records)
        return {str(p["chunk_id"]): str(p.get("digest", "")) for p in found if "chunk_id" in p}

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        edge_points = [Point(id=p.point_id, vector=list(p.vector), payload=p.payload) for p in points]
        self._shard.update(UpdateOperation.upsert_points(edge_points))

    def commit(self) -> None:
        """Flush, optimize (HNSW), then make the build current with one atomic rename of the link."""
        try:
            self._shard.flush()
            self._shard.optimize()
            self._shard.close()
            EdgeShard.load(str(self._build)).close()  # readers find the config already in its resolved form
            previous = _swap_link(self._link, self._build)
            _remove_old_builds(self._link, keep={self._build.name, previous})
        finally:
            self._lock.close()

    def abort(self) -> None:
        try:
            self._shard.close()
        finally:
            shutil.rmtree(self._build, ignore_errors=True)
            self._lock.close()


def _take_lock(link: Path) -> IO[str]:
    lock = open(link.parent / f".{link.name}.lock", "w")  # noqa: SIM115 - held until commit/abort
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RagError(f"another `ragload ingest` is writing {link}; wait for it to finish") from None
    return lock


def _edge_config(dimension: int) -> EdgeConfig:
    vectors = EdgeVectorParams(size=dimension, distance=Distance.Cosine)
    return EdgeConfig(vectors=vectors, wal_enabled=False, max_search_threads=SEARCH_THREADS)


def _start_build(link: Path, build: Path, dimension: int, recreate: bool) -> EdgeShard:
    if recreate or not link.is_dir():
        return EdgeShard.create(str(build), _edge_config(dimension))
    shutil.copytree(link.resolve(), build)
    shard = EdgeShard.load(str(build))
    found = _shard_dimension(shard)
    if found is not None and found != dimension:
        shard.close()
        raise dimension_error(f"at {link}", found, dimension)
    return shard


def _swap_link(link: Path, build: Path) -> str | None:
    """Point `link` at `build` atomically; return the name of the build it pointed at before."""
    previous: str | None = None
    if link.is_symlink():
        previous = os.readlink(link)
    elif link.is_dir():  # a plain folder (old layout): moved aside; briefly missing for readers
        previous = f"{link.name}.build-legacy-{time.strftime('%Y%m%d%H%M%S')}"
        link.rename(link.parent / previous)
    staging = link.parent / f".{link.name}.link-{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(build.name)
    os.replace(staging, link)
    return previous


def _remove_old_builds(link: Path, keep: set[str | None]) -> None:
    """Delete builds older than the previous one (readers still on the previous one keep working)."""
    for path in link.parent.glob(f"{link.name}.build-*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
