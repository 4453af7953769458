"""HTTP error responses shared by the queued API and the baseline, so that both answer errors alike.

Every error body is `{"detail": …}` (FastAPI's own shape, so an `HTTPException` looks the same): a string, or
for bad input the list of problems, each `{"type", "loc", "msg"}` (the offending input is not echoed back: a
rejected query can be 4,000 characters long). RAG core errors map to: UpstreamUnavailable and IndexMissing →
503 with `Retry-After`, UpstreamTimeout → 504, any other RagError (the upstream refused the request) → 502.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from system.rag.errors import IndexMissing, RagError, UpstreamTimeout, UpstreamUnavailable

INDEX_MISSING_RETRY_AFTER_S = 30.0  # an index is built by hand (`ragload ingest`): no point in asking sooner
VALIDATION_ERROR_KEYS = ("type", "loc", "msg", "ctx")  # what a client needs to fix its request


def retry_after_header(seconds: float) -> dict[str, str]:
    """`Retry-After` in whole seconds, at least 1 (HTTP allows no fractions; 0 invites a hot retry loop)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def error_response(status_code: int, detail: Any, retry_after_s: float | None = None) -> JSONResponse:
    headers = retry_after_header(retry_after_s) if retry_after_s is not None else None
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=status_code, headers=headers)


def rag_error_response(exc: RagError) -> JSONResponse:
    if isinstance(exc, UpstreamUnavailable):
        return error_response(503, str(exc), retry_after_s=exc.retry_after)
    if isinstance(exc, IndexMissing):
        return error_response(503, str(exc), retry_after_s=INDEX_MISSING_RETRY_AFTER_S)
    if isinstance(exc, UpstreamTimeout):
        return error_response(504, str(exc))
    return error_response(502, str(exc))


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    problems = [{key: error[key] for key in VALIDATION_ERROR_KEYS if key in error} for error in exc.errors()]
    return error_response(422, problems)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc)


async def _on_rag_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagError)
    return rag_error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Bad input → 422 `{"detail": [problems]}`; RAG core errors → 502/503/504 as in the module docstring."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(RagError, _on_rag_error)
