"""RAG core errors and bad input map to the same HTTP answers in both APIs."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import Response

from system.rag.errors import IndexMissing, RagError, UpstreamTimeout, UpstreamUnavailable
from system.rag.http_errors import install_error_handlers, rag_error_response, retry_after_header
from system.rag.schemas import ChatRequest


def _body(response: Response) -> object:
    return json.loads(bytes(response.body))


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (UpstreamUnavailable("llm down", retry_after=2.5), 503, "3"),
        (UpstreamUnavailable("llm down", retry_after=0.0), 503, "1"),
        (IndexMissing("run ingest"), 503, "30"),
        (UpstreamTimeout("too slow"), 504, None),
        (RagError("the upstream refused the request"), 502, None),
    ],
)
def test_rag_errors_map_to_status_and_retry_after(
    error: RagError, status: int, retry_after: str | None
) -> None:
    response = rag_error_response(error)

    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    assert _body(response) == {"detail": str(error)}


def test_retry_after_is_whole_seconds() -> None:
    assert retry_after_header(0.2) == {"Retry-After": "1"}
    assert retry_after_header(4.01) == {"Retry-After": "5"}


def test_handlers_answer_bad_input_without_echoing_it_and_rag_errors_by_kind() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/chat")
    def chat(request: ChatRequest) -> dict[str, str]:
        raise UpstreamUnavailable(f"no answer to {request.query}", retry_after=7)

    client = TestClient(app)
    too_long = client.post("/chat", json={"query": "x" * 5000})
    failing = client.post("/chat", json={"query": "hi"})

    assert too_long.status_code == 422
    assert too_long.json() == {
        "detail": [
            {
                "type": "string_too_long",
                "loc": ["body", "query"],
                "msg": "String should have at most 4000 characters",
                "ctx": {"max_length": 4000},
            }
        ]
    }
    assert (failing.status_code, failing.headers["Retry-After"]) == (503, "7")
    assert failing.json() == {"detail": "no answer to hi"}
