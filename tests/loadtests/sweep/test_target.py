"""`ragload bench --target`: the parts started by hand, as a user with their own servers runs them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from loadtests.stack.embedded_valkey import EmbeddedValkey
from loadtests.stack.services import ManagedProcess, free_port, ragload_command, stop_all
from loadtests.sweep.runner import TargetMismatch, parse_target
from mocks.latency import LatencySpec
from reports.build import build_report

CHAT_LATENCY = "const:20ms"
EMBED_LATENCY = "const:5ms"
STARTED_LATENCY = "const:1ms"  # the mock is started with another model: the bench sets the profile's
QUEUE = "ragload-target-test"
PASSWORD = "target-test-secret"  # as in compose: the broker requires a password, carried by the URL
RUN = f"""
[run]
warmup_s = 1
duration_s = 3
deadline_s = 5
seed = 3

[mock]
chat_latency = "{CHAT_LATENCY}"
embed_latency = "{EMBED_LATENCY}"
"""
MATCHING_CELLS = """
[[group]]
architecture = "queued"
mode = "longpoll"
load = "closed"
workers = [2]
users = [2]

[[group]]
architecture = "sync"
mode = "threadpool"
threads = 4
load = "open"
rates = [5]
"""
ANOTHER_BASELINE_MODE = """
[[group]]
architecture = "sync"
mode = "blocking"
load = "open"
rates = [5]
"""


def test_parse_target_reads_every_part_and_refuses_unknown_ones() -> None:
    target = parse_target(
        "api=http://a:8000/,baseline=http://b:8001,mock=http://m:8100,redis=redis://:p@v:6379/0"
    )
    assert target.urls == {
        "api": "http://a:8000",
        "baseline": "http://b:8001",
        "mock": "http://m:8100",
        "redis": "redis://:p@v:6379/0",
    }
    assert parse_target("mock=http://m:8100/v1/").urls == {"mock": "http://m:8100"}
    for bad in ("", "api", "qdrant=http://q:6333"):
        with pytest.raises(ValueError):
            parse_target(bad)


@pytest.fixture(scope="module")
def external_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Valkey, mock, index, API, 2 workers and the baseline, each started the way a user would."""
    tmp_path = tmp_path_factory.mktemp("external")
    logs = tmp_path / "logs"
    logs.mkdir()
    valkey = EmbeddedValkey(tmp_path / "valkey", log_path=logs / "valkey.log", password=PASSWORD)
    valkey.start()
    started: list[ManagedProcess] = []

    def start(name: str, *args: str, ready_url: str | None = None) -> None:
        process = ManagedProcess(name, ragload_command(*args), env, ready_url, logs / f"{name}.log").start()
        started.append(process)
        process.wait_ready()

    ports = {name: free_port() for name in ("mock", "api", "baseline")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "REDIS_URL": valkey.url,
        "QUEUE_NAME": QUEUE,
        "OPENAI_BASE_URL": f"{urls['mock']}/v1",
        "QDRANT_URL": "",
        "QDRANT_COLLECTION": "ragload-target-test",
        "RAGLOAD_DATA_DIR": str(tmp_path / "data"),
    }
    try:
        start(
            "mock",
            *("mock", "--port", str(ports["mock"]), "--seed", "3"),
            *("--chat-latency", STARTED_LATENCY, "--embed-latency", STARTED_LATENCY),
            ready_url=f"{urls['mock']}/v1/models",
        )
        ingest = subprocess.run(
            ragload_command("ingest", "--stdlib-modules", "json,csv"),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ingest.returncode == 0, ingest.stderr[-3000:]
        start("api", "api", "--port", str(ports["api"]), ready_url=f"{urls['api']}/readyz")
        start("worker", "worker", "--count", "2")
        start(
            "baseline",
            *("baseline", "--mode", "threadpool", "--threads", "4", "--port", str(ports["baseline"])),
            ready_url=f"{urls['baseline']}/readyz",
        )
        yield {**urls, "redis": valkey.url}
    finally:
        stop_all(reversed(started))
        valkey.stop()


def bench(target: dict[str, str], cells: str, out: Path) -> subprocess.CompletedProcess[str]:
    profile = out / "profile.toml"
    out.mkdir(parents=True, exist_ok=True)
    profile.write_text(RUN + cells, encoding="utf-8")
    target_flag = ",".join(f"{name}={url}" for name, url in target.items())
    return subprocess.run(
        ragload_command(
            *("bench", "--target", target_flag, "--profile", str(profile)),
            *("--out", str(out / "runs"), "--no-report"),
        ),
        env={**os.environ, "QUEUE_NAME": QUEUE},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_bench_against_external_servers(external_servers: dict[str, str], tmp_path: Path) -> None:
    target = {**external_servers, "mock": f"{external_servers['mock']}/v1"}  # the OPENAI_BASE_URL form

    done = bench(target, MATCHING_CELLS, tmp_path)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    with open(run_dir / "summary.csv", newline="") as summary:
        rows = {row["architecture"]: row for row in csv.DictReader(summary)}
    assert set(rows) == {"queued", "sync"}
    for architecture, row in rows.items():
        assert int(row["requests"]) > 0, architecture
        assert float(row["throughput_rps"]) > 0, architecture
        assert int(row["errors"]) == 0 and int(row["timeouts"]) == 0, (architecture, row)
    queued_cell = json.loads((run_dir / "cells" / rows["queued"]["cell_id"] / "cell.json").read_text())
    assert queued_cell["workers"] == 2
    with urllib.request.urlopen(f"{external_servers['mock']}/_mock/config", timeout=30) as response:
        mock_config = json.load(response)
    assert LatencySpec.parse(mock_config["chat_latency"]) == LatencySpec.parse(CHAT_LATENCY)
    assert LatencySpec.parse(mock_config["embed_latency"]) == LatencySpec.parse(EMBED_LATENCY)


@pytest.mark.slow
def test_a_cell_the_target_is_not_sized_for_stops_the_run(
    external_servers: dict[str, str], tmp_path: Path
) -> None:
    done = bench(external_servers, ANOTHER_BASELINE_MODE, tmp_path)

    assert done.returncode == 1
    assert "'mode': 'blocking'" in done.stderr and "'mode': 'threadpool'" in done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "summary.csv").exists()  # nothing measured under a wrong label


@pytest.mark.slow
def test_worker_count_is_checked_against_the_broker(external_servers: dict[str, str]) -> None:
    target = parse_target(",".join(f"{name}={url}" for name, url in external_servers.items()))
    target = replace(target, queue_name=QUEUE, scale_wait_s=10.0)
    target.scale_workers(2)  # what runs (waits for the workers to register)
    with pytest.raises(TargetMismatch, match="needs 3 workers but 2 are registered"):
        replace(target, scale_wait_s=0.5).scale_workers(3)


@pytest.mark.slow
def test_without_a_mock_url_the_report_leaves_the_ideal_out(
    external_servers: dict[str, str], tmp_path: Path
) -> None:
    """The profile's latency never reaches an upstream the bench cannot configure: no ideal, and the
    report says why (issue 14, item 9)."""
    target = {name: url for name, url in external_servers.items() if name != "mock"}

    done = bench(target, MATCHING_CELLS, tmp_path)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["upstream_known"] is False
    with open(run_dir / "summary.csv", newline="") as summary:
        rows = list(csv.DictReader(summary))
    assert rows and all(row["ideal_rps"] == "" and row["throughput_ratio"] == "" for row in rows)
    report = build_report(run_dir).with_name("report.md").read_text()
    assert "The upstream's latency is unknown" in report and "no ideal throughput" in report
