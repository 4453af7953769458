"""Checks that an API's OpenAPI document tells the truth, shared by the queued API's and the baseline's tests.

- `declaration_problems(doc)`: house rules every route must follow (422 declared wherever input is read, the
  shared error models, `Retry-After` on 429 and 503 and nowhere else).
- `conformance_problems(doc, response)`: a real response against its document: the status is declared, the
  JSON body validates against the declared schema, `Retry-After` is there exactly when declared.
- `run_schemathesis(url, …)`: Schemathesis (the CLI, against the running app) generates requests from the
  schema, valid and invalid, and fails on any status, body or header the schema did not announce.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema

ERROR_MODELS = {"ErrorBody", "ValidationErrorBody"}  # system/rag/http_errors.py
RETRY_AFTER_STATUSES = {"429", "503"}
METHODS = {"get", "post", "put", "patch", "delete"}
DocumentedError = tuple[str, str, int]  # method, path, status


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def documented_errors(doc: dict[str, Any]) -> set[DocumentedError]:
    return {
        (method, path, int(status))
        for method, path, operation in operations(doc)
        for status in operation["responses"]
        if int(status) >= 400
    }


def _json_schema(response_doc: dict[str, Any]) -> dict[str, Any] | None:
    schema: dict[str, Any] | None = response_doc.get("content", {}).get("application/json", {}).get("schema")
    return schema


def declaration_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    if "HTTPValidationError" in doc.get("components", {}).get("schemas", {}):
        problems.append("FastAPI's own 422 schema is declared: it has fields this API never sends")
    for method, path, operation in operations(doc):
        where = f"{method} {path}"
        responses: dict[str, Any] = operation["responses"]
        if (operation.get("parameters") or operation.get("requestBody")) and "422" not in responses:
            problems.append(f"{where} reads input but declares no 422")
        for status, response in responses.items():
            schema = _json_schema(response)
            if schema is None:
                problems.append(f"{where} {status}: no JSON body declared")
                continue
            if int(status) >= 400:
                model = "ValidationErrorBody" if status == "422" else "ErrorBody"
                if schema.get("$ref") != f"#/components/schemas/{model}":
                    problems.append(f"{where} {status}: body is {schema}, not the shared {model}")
            header = response.get("headers", {}).get("Retry-After")
            if status in RETRY_AFTER_STATUSES:
                if not header or not header.get("required") or header["schema"].get("minimum") != 1:
                    problems.append(f"{where} {status}: Retry-After (required, integer >= 1) not declared")
            elif header:
                problems.append(f"{where} {status}: declares a Retry-After it does not send")
    return problems


def conformance_problems(doc: dict[str, Any], response: httpx.Response) -> list[str]:
    """What in a real `response` its API's document did not announce (empty: it conforms)."""
    method, url_path = response.request.method, response.request.url.path
    operation = doc["paths"].get(url_path, {}).get(method.lower())
    if operation is None:
        return [f"{method} {url_path} is not in the document"]
    declared = operation["responses"].get(str(response.status_code))
    where = f"{method} {url_path} {response.status_code}"
    if declared is None:
        return [f"{where}: status not declared (declared: {sorted(operation['responses'])})"]
    problems = []
    schema = _json_schema(declared)
    if schema is not None:
        if not response.headers.get("content-type", "").startswith("application/json"):
            problems.append(f"{where}: content-type {response.headers.get('content-type')}, not JSON")
        else:
            validator = jsonschema.Draft202012Validator({**schema, "components": doc.get("components", {})})
            problems += [f"{where}: body {error.message}" for error in validator.iter_errors(response.json())]
    retry_after = response.headers.get("Retry-After")
    if "Retry-After" in declared.get("headers", {}):
        if retry_after is None or not retry_after.isdigit() or int(retry_after) < 1:
            problems.append(f"{where}: Retry-After declared, sent {retry_after!r}")
    elif retry_after is not None:
        problems.append(f"{where}: sends Retry-After {retry_after!r}, undeclared")
    return problems


SCHEMATHESIS_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)


def run_schemathesis(
    base_url: str, report_dir: Path, max_examples: int = 40
) -> subprocess.CompletedProcess[str]:
    """`st run` against the running app: deterministic generation (no seed, no example database) and a
    bounded number of examples per operation (valid and invalid requests): the same, bounded run each time."""
    report_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{base_url}/openapi.json",
        *("--checks", SCHEMATHESIS_CHECKS),
        *("--phases", "examples,coverage,fuzzing"),
        *("--max-examples", str(max_examples)),
        "--generation-deterministic",
        *("--workers", "1"),
        *("--request-timeout", "30"),
        "--no-color",
        *("--report", "junit"),
        *("--report-dir", str(report_dir)),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report_dir)
