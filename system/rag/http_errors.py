"""HTTP error responses shared by the queued API and the baseline, so that both answer errors alike, and
the OpenAPI declaration of each (`documented_errors`), so that both schemas tell the truth about them.

Every error body is `{"detail": …}` (FastAPI's own shape, so an `HTTPException` looks the same): a string
(`ErrorBody`), or for bad input the list of problems, each `{"type", "loc", "msg"}` (`ValidationErrorBody`;
the offending input is not echoed back: a rejected query can be 4,000 characters long). A body that is not
JSON at all is bad input too: 422 `json_invalid`, never FastAPI's bare 400 (see `_on_http_exception`).
RAG core errors map to: UpstreamUnavailable and IndexMissing → 503 with `Retry-After`, UpstreamTimeout → 504,
any other RagError (the upstream refused the request) → 502. 429 and 503 always carry `Retry-After`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from system.rag.errors import IndexMissing, RagError, UpstreamTimeout, UpstreamUnavailable

INDEX_MISSING_RETRY_AFTER_S = 30.0  # an index is built by hand (`ragload ingest`): no point in asking sooner
VALIDATION_ERROR_KEYS = ("type", "loc", "msg", "ctx")  # what a client needs to fix its request
RETRY_AFTER_STATUSES = frozenset({429, 503})
# FastAPI answers 400 with this detail when it cannot read a JSON body that is not a JSON syntax error (bytes
# that are not UTF-8, a body that cannot be read): `_on_http_exception` makes it the 422 of any bad body.
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


class ErrorBody(BaseModel):
    """The body of every error but bad input."""

    detail: str = Field(description="what went wrong, in one sentence")


class Problem(BaseModel):
    """One thing wrong with the request (pydantic's error, without the offending input)."""

    type: str = Field(description="pydantic's error type: missing, string_too_long, json_invalid, …")
    loc: list[str | int] = Field(description='where: ["body", "query"], ["query", "job_id"], …')
    msg: str
    ctx: dict[str, object] | None = Field(default=None, description="the limit that was broken, if any")


class ValidationErrorBody(BaseModel):
    """The body of a 422: every problem found in the request."""

    detail: list[Problem]


RETRY_AFTER_DOC = {
    "Retry-After": {
        "description": "Whole seconds to wait before trying again (at least 1)",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
BAD_INPUT = (
    "Bad input: a body that is not JSON (`json_invalid`), a missing or unknown field, a value of the wrong "
    "type or out of range. `detail` lists every problem."
)


def documented_errors(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, object]]:
    """The `responses=` of a route: for each error status it can answer (→ what it means there), the body
    model (`ValidationErrorBody` for 422, else `ErrorBody`) and, for 429 and 503, the `Retry-After` header.
    The 422 of bad input replaces FastAPI's own declaration, whose schema has fields this API never sends."""
    responses: dict[int | str, dict[str, object]] = {}
    for status, description in sorted(descriptions.items()):
        model = ValidationErrorBody if status == 422 else ErrorBody
        response: dict[str, object] = {"model": model, "description": description}
        if status in RETRY_AFTER_STATUSES:
            response["headers"] = RETRY_AFTER_DOC
        responses[status] = response
    return responses


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


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    """FastAPI's 400 for an unreadable body becomes the 422 of bad input; any other HTTPException as usual."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
        reason = str(exc.__cause__) if exc.__cause__ is not None else "unreadable body"
        problem = {"type": "json_invalid", "loc": ["body"], "msg": "The body is not JSON (UTF-8)"}
        return error_response(422, [{**problem, "ctx": {"error": reason}}])
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Bad input → 422 `{"detail": [problems]}` (a body that is not JSON included); RAG core errors →
    502/503/504 as in the module docstring."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(RagError, _on_rag_error)
