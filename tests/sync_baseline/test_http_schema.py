"""The baseline's OpenAPI document tells the truth: every error a route declares is provoked here on a real
`ragload baseline` process (real mock upstream, real index) and answered as declared; nothing it answers is
undeclared. The same checks and error models as the queued API's (tests/system/test_api_schema.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MockServer
from tests.openapi_checks import (
    conformance_problems,
    declaration_problems,
    documented_errors,
    run_schemathesis,
)
from tests.sync_baseline.conftest import StartBaseline

JSON = {"Content-Type": "application/json"}
CHAT = ("POST", "/chat")
READYZ = ("GET", "/readyz")


def default(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    return start("threadpool")


def upstream_failing(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    mock.configure(error_rate=1.0)
    return start("threadpool")


def upstream_refusing(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    mock.configure(models=["mock-chat", "mock-embed"])  # a mock that knows only these answers others 404
    return start("threadpool", env={"CHAT_MODEL": "no-such-model"})


def upstream_slow(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    url = start("threadpool", "--request-timeout-s", "1")
    mock.configure(chat_latency="const:8s")
    return url


def breaker_open(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    url = start("threadpool", env={"BREAKER_FAIL_MAX": "1", "BREAKER_RESET_TIMEOUT_S": "60"})
    mock.configure(error_rate=1.0)
    assert httpx.post(f"{url}/chat", json={"query": "trips the breaker"}, timeout=30).status_code == 503
    return url


def no_index(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    return start("threadpool", env={"RAGLOAD_DATA_DIR": str(tmp_path / "empty")}, ready_path="/healthz")


def unreadable_index(start: StartBaseline, mock: MockServer, tmp_path: Path) -> str:
    (tmp_path / "data" / "index" / "ragload-test").mkdir(parents=True)  # a folder with no shard in it
    return start("threadpool", env={"RAGLOAD_DATA_DIR": str(tmp_path / "data")}, ready_path="/healthz")


Setup = Callable[[StartBaseline, MockServer, Path], str]
PROVOKED: list[tuple[tuple[str, str], int, Setup, dict[str, Any]]] = [
    (CHAT, 422, default, {"json": {"query": " ", "top_k": 21}}),
    (CHAT, 422, default, {"content": b'{"query": ', "headers": JSON}),
    (CHAT, 422, default, {"content": b'{"query": "caf\xe9"}', "headers": JSON}),  # not UTF-8
    (CHAT, 502, upstream_refusing, {"json": {"query": "hi"}}),
    (CHAT, 503, upstream_failing, {"json": {"query": "hi"}}),
    (CHAT, 503, breaker_open, {"json": {"query": "hi"}}),
    (CHAT, 504, upstream_slow, {"json": {"query": "hi"}}),
    (READYZ, 502, unreadable_index, {}),
    (READYZ, 503, no_index, {}),
    (READYZ, 503, breaker_open, {}),
]
NOT_PROVOKED = {
    ("GET", "/readyz", 504): "a Qdrant server that times out (QDRANT_URL); the tests use the embedded index",
}


def baseline_document() -> dict[str, Any]:
    from sync_baseline.app import create_app

    return create_app().openapi()


def test_every_route_declares_its_errors_with_the_shared_models() -> None:
    assert declaration_problems(baseline_document()) == []


def test_the_errors_declared_are_the_errors_provoked_below_in_every_mode() -> None:
    from sync_baseline.app import create_app
    from sync_baseline.settings import BaselineSettings, Mode

    provoked = {(method, path, status) for (method, path), status, _, _ in PROVOKED}
    for mode in Mode:
        document = create_app(BaselineSettings(mode=mode)).openapi()
        assert documented_errors(document) == provoked | set(NOT_PROVOKED), mode


def test_both_apis_share_the_error_models() -> None:
    from system.api import create_app

    queued = create_app().openapi()["components"]["schemas"]
    baseline = baseline_document()["components"]["schemas"]
    for model in ("ErrorBody", "ValidationErrorBody", "Problem"):
        assert queued[model] == baseline[model], model


@pytest.mark.parametrize(
    ("route", "status", "setup", "request_args"),
    PROVOKED,
    ids=[f"{method} {path} {status} {setup.__name__}" for (method, path), status, setup, _ in PROVOKED],
)
def test_each_declared_error_happens_as_declared(
    start_baseline: StartBaseline,
    mock_server: MockServer,
    tmp_path: Path,
    route: tuple[str, str],
    status: int,
    setup: Setup,
    request_args: dict[str, Any],
) -> None:
    url = setup(start_baseline, mock_server, tmp_path)
    method, path = route

    response = httpx.request(method, f"{url}{path}", timeout=30, **request_args)

    assert response.status_code == status, response.text
    assert conformance_problems(baseline_document(), response) == []


@pytest.mark.slow
def test_a_client_generated_from_the_schema_meets_only_declared_answers(
    start_baseline: StartBaseline, tmp_path: Path
) -> None:
    url = start_baseline("threadpool", "--threads", "4")

    done = run_schemathesis(url, tmp_path / "schemathesis")

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    print(done.stdout[-1500:])
