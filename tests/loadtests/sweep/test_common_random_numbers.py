"""Common random numbers (issue 14, item 1): at one load, both architectures get the same load.

One real `ragload bench` run: the queued system (2 workers) and the baseline (2 threads) at the same open-loop
rate and at the same closed-loop user count, one trial each. Then:
- the harness side, always: both cells of a load got the same arrival times (open loop) and the same named
  requests with the same queries (both loops), so every request can be paired across the architectures;
- the mock side, when the mock offers `GET /_mock/calls` and draws each call's latency from the seed and a
  hash of the call's content (the `upstream` branch, mocks/draws.py): each request's upstream calls drew the
  same latency in both cells. With a mock that draws in arrival order instead, this test is skipped.

What this assumes of the mock's `GET /_mock/calls`: JSON {"fields": [...], "calls": [[...], ...]} with the
fields endpoint ("chat" | "embeddings"), key (hex hash of the call's content), occurrence (0 for the first
call with that key since the last `DELETE /_mock/stats`) and draw_ms (the latency drawn); `PUT /_mock/config
{"seed": N}` reseeding the draws and `DELETE /_mock/stats` clearing the call log and the occurrence counts.
The sweep stores that log per trial as cells/<trial>/upstream_calls.csv.
"""

from __future__ import annotations

import csv
import json
import statistics
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.locust.user_support import request_query
from loadtests.sweep.samples import Sample, read_samples
from tests.conftest import MockServer
from tests.loadtests.sweep.embedded_bench import run_bench

PROFILE = """
[run]
warmup_s = 1
duration_s = 4
deadline_s = 5
seed = 5

[mock]
chat_latency = "lognormal:100ms,0.5"
embed_latency = "lognormal:10ms,0.5"

[[group]]
architecture = "queued"
mode = "longpoll"
load = "open"
workers = [2]
rates = [8]

[[group]]
architecture = "sync"
mode = "threadpool"
threads = 2
load = "open"
rates = [8]

[[group]]
architecture = "queued"
mode = "longpoll"
load = "closed"
workers = [2]
users = [4]

[[group]]
architecture = "sync"
mode = "threadpool"
threads = 2
load = "closed"
users = [4]
"""


@pytest.fixture(scope="module")
def run_dir(rag_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield run_bench(PROFILE, rag_env, tmp_path_factory.mktemp("crn"), timeout_s=600)


def cell_dir(run_dir: Path, architecture: str, load: str) -> Path:
    (found,) = [
        p for p in (run_dir / "cells").iterdir() if f"-{architecture}-" in p.name and f"-{load}-" in p.name
    ]
    return found


def requests_of(folder: Path) -> dict[str, Sample]:
    return {s.request: s for s in read_samples(folder / "samples.csv") if s.kind == "e2e"}


def seed_of(folder: Path) -> int:
    return int(json.loads((folder / "cell.json").read_text())["seed"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_both_architectures_get_the_same_arrivals_and_requests_at_one_load(run_dir: Path) -> None:
    queued_open, sync_open = cell_dir(run_dir, "queued", "open"), cell_dir(run_dir, "sync", "open")
    assert seed_of(queued_open) == seed_of(sync_open)
    queued, sync = requests_of(queued_open), requests_of(sync_open)
    common = set(queued) & set(sync)
    # The same Poisson times: the same arrivals fall in the window (edges aside), at the same offsets.
    assert len(common) >= 0.9 * max(len(queued), len(sync)) and len(common) >= 20
    shifts = [queued[name].t - sync[name].t for name in common]
    assert statistics.pstdev(shifts) < 0.005, "the arrivals of the two cells are not the same schedule"
    # Closed loop: user u's n-th request is the same request in both cells.
    queued_closed = requests_of(cell_dir(run_dir, "queued", "closed"))
    sync_closed = requests_of(cell_dir(run_dir, "sync", "closed"))
    assert len(set(queued_closed) & set(sync_closed)) >= 10
    seed = seed_of(cell_dir(run_dir, "queued", "closed"))
    assert request_query("u0.0.5", seed) == request_query(
        "u0.0.5", seed_of(cell_dir(run_dir, "sync", "closed"))
    )


def mock_draws_by_content(run_dir: Path) -> bool:
    """Whether this run's mock logged its calls with content keys (the upstream branch's mock)."""
    return all((p / "upstream_calls.csv").is_file() for p in (run_dir / "cells").iterdir())


def draws(folder: Path) -> dict[tuple[str, str, str], float]:
    with (folder / "upstream_calls.csv").open(newline="", encoding="utf-8") as handle:
        return {
            (row["endpoint"], row["key"], row["occurrence"]): float(row["draw_ms"])
            for row in csv.DictReader(handle)
            if row.get("draw_ms")
        }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_each_request_draws_the_same_upstream_latency_in_both_architectures(run_dir: Path) -> None:
    if not mock_draws_by_content(run_dir):
        pytest.skip(
            "the mock has no GET /_mock/calls: per-request draws by content come with the upstream branch "
            "(mocks/draws.py); the harness side of CRN is checked by the test above"
        )
    for load in ("open", "closed"):
        queued, sync = draws(cell_dir(run_dir, "queued", load)), draws(cell_dir(run_dir, "sync", load))
        common = set(queued) & set(sync)
        embeddings = [key for key in common if key[0] == "embeddings"]
        assert len(embeddings) >= 0.8 * min(
            sum(k[0] == "embeddings" for k in queued), sum(k[0] == "embeddings" for k in sync)
        ), load
        assert {key: queued[key] for key in common} == {key: sync[key] for key in common}, load
        # and the draws do vary between requests (not one constant latency for all)
        assert len({round(queued[key], 3) for key in embeddings}) > len(embeddings) // 2


def test_mock_calls_endpoint_shape_when_offered(mock_server_session: MockServer) -> None:
    """The session's mock: if it offers GET /_mock/calls, it has the fields the sweep stores."""
    try:
        with urllib.request.urlopen(f"{mock_server_session.url}/_mock/calls", timeout=5) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        pytest.skip(f"this mock has no GET /_mock/calls (HTTP {exc.code}): it comes with the upstream branch")
    assert {"endpoint", "key", "occurrence", "draw_ms"} <= set(body["fields"])
