"""Errors the RAG core raises; the APIs map them to HTTP codes (503 + Retry-After, 504)."""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class UpstreamUnavailable(RagError):
    """A dependency (LLM, vector store) refused or failed; worth retrying after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTimeout(RagError):
    """A dependency did not answer within its deadline."""


class IndexMissing(RagError):
    """The vector index has not been built (run `ragload ingest`)."""


class CircuitOpen(UpstreamUnavailable):
    """The LLM circuit breaker is open: the call was not made (system/rag/breaker.py)."""
