"""`ragload ingest [PATH…]`: chunk a corpus, embed it in batches through the LLM client, write the index.

Without PATH the corpus is the standard library's docstrings (system/rag/corpus.py says what is left out).
Re-running is idempotent: point ids are uuid5 of the chunk ids, and a chunk whose text did not change is
neither re-embedded nor rewritten. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from system.rag.corpus import Chunk, file_chunks, stdlib_chunks
from system.rag.errors import RagError
from system.rag.llm import LLMClient
from system.rag.settings import RagSettings
from system.rag.store import DimensionMismatch, IndexPoint, IndexWriter, digest
from system.rag.store_backend import open_writer

EMBED_BATCH = 128  # texts per embeddings request: large enough to amortise a round trip, small for progress
EMBED_CONCURRENCY = 4  # requests in flight: overlaps the upstream's latency without flooding it
LOOKUP_BATCH = 1024  # chunk ids per digest lookup in the existing index
PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class IngestReport:
    location: str
    chunks: int
    embedded: int
    before: int
    after: int
    seconds: float

    def summary(self) -> str:
        unchanged = self.chunks - self.embedded
        return (
            f"index {self.location}: {self.chunks} chunks ({self.embedded} embedded, {unchanged} unchanged); "
            f"points {self.before} -> {self.after}; {self.seconds:.1f} s"
        )


class Progress:
    """One updating line on a terminal, a line per few seconds elsewhere (logs, CI)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.started = time.perf_counter()
        self._last = 0.0
        self._tty = stream.isatty()

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        interval = PROGRESS_EVERY_S if self._tty else 10 * PROGRESS_EVERY_S
        if not final and now - self._last < interval:
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        line = f"ingest: embedded {done}/{self.total} chunks ({rate:,.0f}/s)"
        end = "\n" if final or not self._tty else ""
        self.stream.write(f"\r{line}{end}" if self._tty else f"{line}{end}")
        self.stream.flush()


def collect_chunks(paths: Sequence[Path], stdlib: bool, stdlib_modules: Sequence[str] | None) -> list[Chunk]:
    """The corpus, de-duplicated by chunk id (the last one wins). No PATH means the stdlib docstrings."""
    chunks: list[Chunk] = []
    if stdlib or stdlib_modules or not paths:
        chunks.extend(stdlib_chunks(set(stdlib_modules) if stdlib_modules else None))
    chunks.extend(file_chunks(paths))
    return list({chunk.id: chunk for chunk in chunks}.values())


def ingest(
    chunks: Sequence[Chunk],
    settings: RagSettings,
    *,
    recreate: bool = False,
    batch_size: int = EMBED_BATCH,
    concurrency: int = EMBED_CONCURRENCY,
    progress: Progress | None = None,
) -> IngestReport:
    started = time.perf_counter()
    writer = open_writer(settings, recreate=recreate)
    llm = LLMClient(settings)
    try:
        before = writer.count()
        todo = _changed(writer, chunks)
        progress = progress or Progress(len(todo))
        progress.total = len(todo)
        embedded = _embed_and_write(writer, llm, todo, batch_size, concurrency, progress.update)
        progress.update(embedded, final=True)
        after = writer.count()
        if embedded or recreate:
            writer.commit()
        else:
            writer.abort()  # nothing changed: keep the current index as it is
    except BaseException:
        writer.abort()
        raise
    finally:
        llm.close()
    return IngestReport(writer.location, len(chunks), embedded, before, after, time.perf_counter() - started)


def _changed(writer: IndexWriter, chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks that are not in the index yet, or whose text changed."""
    todo: list[Chunk] = []
    for batch in _batches(chunks, LOOKUP_BATCH):
        stored = writer.digests([chunk.id for chunk in batch])
        todo.extend(chunk for chunk in batch if stored.get(chunk.id) != digest(chunk.text))
    return todo


def _embed_and_write(
    writer: IndexWriter,
    llm: LLMClient,
    todo: Sequence[Chunk],
    batch_size: int,
    concurrency: int,
    on_progress: Callable[[int], None],
) -> int:
    """Embed batches on `concurrency` threads; write them in order on this one (the writer is not shared)."""
    batches = list(_batches(todo, batch_size))
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="embed") as pool:
        vectors_per_batch = pool.map(lambda batch: llm.embed([c.text for c in batch]), batches)
        for batch, vectors in zip(batches, vectors_per_batch, strict=True):
            writer.upsert(
                [IndexPoint(c.id, c.text, c.source, v) for c, v in zip(batch, vectors, strict=True)]
            )
            done += len(batch)
            on_progress(done)
    return done


def _batches(items: Sequence[Chunk], size: int) -> Iterable[Sequence[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help=".md/.txt files or folders to index"
    )
    parser.add_argument(
        "--stdlib",
        action="store_true",
        help="also index the stdlib docstrings (the default without PATH)",
    )
    parser.add_argument(
        "--stdlib-modules",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        metavar="NAMES",
        help="index only these top-level stdlib modules, comma-separated (e.g. json,csv,pathlib)",
    )
    parser.add_argument("--recreate", action="store_true", help="drop the existing index and build it anew")
    parser.add_argument("--batch-size", type=int, default=EMBED_BATCH, help="texts per embeddings request")
    parser.add_argument(
        "--concurrency", type=int, default=EMBED_CONCURRENCY, help="embeddings requests in flight"
    )


def main(args: argparse.Namespace) -> int:
    try:
        settings = RagSettings()
    except ValidationError as exc:
        print(f"ragload ingest: error: bad setting in the environment:\n{exc}", file=sys.stderr)
        return 2
    try:
        chunks = collect_chunks(args.paths, args.stdlib, args.stdlib_modules)
        print(f"ingest: {len(chunks)} chunks to index into {settings.qdrant_collection}", file=sys.stderr)
        report = ingest(
            chunks, settings, recreate=args.recreate, batch_size=args.batch_size, concurrency=args.concurrency
        )
    except DimensionMismatch as exc:
        print(f"ragload ingest: error: {exc}", file=sys.stderr)
        return 3
    except (RagError, FileNotFoundError) as exc:
        print(f"ragload ingest: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
