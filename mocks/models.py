"""Model names: any name is accepted unless the config restricts them (`models`), as a server that hosts
whatever a client asks for. An application configured with `gpt-4o-mini` and `text-embedding-3-small`, or a
benchmark tool sending its own model id, works against the mock unchanged."""

from __future__ import annotations

from typing import Any

from mocks.asgi import ApiError, dumps, invalid

DEFAULT_MODELS = ("mock-chat", "mock-embed")  # what /v1/models lists when no `models` are configured


def check_model(model: Any, allowed: tuple[str, ...]) -> str:
    """The model name, or the 4xx the API answers for a missing, mistyped or (when restricted) unknown one."""
    if model is None:
        raise invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise invalid(f"'model' must be a non-empty string, got {model!r}", "model", "invalid_type")
    if allowed and model not in allowed:
        raise model_not_found(model, allowed)
    return model


def model_not_found(model: str, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(
        404,
        f"The model '{model}' does not exist (models: {', '.join(allowed)}).",
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "ragload-mock"}


def models_body(allowed: tuple[str, ...]) -> bytes:
    return dumps({"object": "list", "data": [model_object(m) for m in allowed or DEFAULT_MODELS]})
