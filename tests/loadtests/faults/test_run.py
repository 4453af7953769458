"""A tiny fault scenario end to end on the real embedded stack, and the broker restart it relies on."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import psutil
import redis
from rq import Queue

from loadtests.faults.audit import JOB_COLUMNS
from loadtests.faults.kills import KILLS_COLUMNS
from loadtests.faults.profile import parse_fault_profile
from loadtests.faults.run import ScenarioRun, stack_env
from loadtests.faults.timeline import TIMELINE_COLUMNS
from loadtests.stack.embedded_stack import EmbeddedStack
from loadtests.stack.embedded_valkey import EmbeddedValkey
from loadtests.stack.services import free_port

DOCS = {"queues.md": "# Job queues\n\nA job queue decouples accepting a request from doing the work.\n"}
# ~100 jobs in the first second, then next to nothing; one worker SIGKILLed at 2 s. On an idle machine the
# workers are idle by then; on a busy one the kill may catch a job mid-run, which must then be retried by
# the other worker within seconds (system/retry_policy.py: ≤ 20 s by design), well inside the drain.
TINY = {
    "kind": "faults",
    "mock": {"chat_latency": "const:0ms", "embed_latency": "const:0ms"},
    "scenario": [
        {
            "name": "tiny",
            "workers": 2,
            "load": [{"at_s": 0, "rate": 100}, {"at_s": 1, "rate": 0.001}],
            "duration_s": 3,
            "events": [{"kind": "kill_worker", "every_s": 2, "to_s": 2.5}],
            "drain_limit_s": 30,
        }
    ],
}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_embedded_valkey_restarts_on_its_port_with_its_data(tmp_path: Path) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey")
    valkey.start()
    try:
        url = valkey.url
        with redis.Redis.from_url(url) as client:
            Queue("q", connection=client).enqueue("builtins.len", "abc")
        valkey.stop_server()
        with redis.Redis.from_url(url, socket_connect_timeout=0.5) as client:
            try:
                client.ping()
                raise AssertionError("the broker still answers after stop_server()")
            except redis.exceptions.ConnectionError:
                pass
        valkey.restart()
        assert valkey.url == url
        with redis.Redis.from_url(url) as client:
            assert Queue("q", connection=client).count == 1  # the AOF brought the queued job back
    finally:
        valkey.stop()


def test_a_tiny_scenario_writes_every_file_and_loses_nothing(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    profile = parse_fault_profile(TINY)
    scenario = profile.scenario[0]
    env = {
        **stack_env(profile),
        "RAGLOAD_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "",
        "OPENAI_BASE_URL": "",
    }
    stack = EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        workers=scenario.workers,
        mock_args=("--chat-latency", "const:0ms", "--embed-latency", "const:0ms"),
        with_baseline=False,
        env=env,
        log_dir=tmp_path / "logs",
        ingest_args=[str(docs)],
    )
    folder = tmp_path / "run" / "faults" / "tiny"
    seen: list[int] = []
    try:
        stack.start()
        seen = [pid for pids in stack.pids().values() for pid in pids]
        outcome = ScenarioRun(stack, profile, scenario, 1, 1).run(folder, time.monotonic())
        seen += [pid for pids in stack.pids().values() for pid in pids]
    finally:
        stack.stop()
    assert not [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]

    accepted = outcome["accepted"]
    assert 50 < accepted < 200 and outcome["finished"] == accepted
    assert outcome["lost"] == 0 and outcome["lost_job_ids"] == [] and outcome["dead_lettered"] == 0
    assert outcome["broker"] is None and outcome["breaker"] is None
    assert outcome["max_workers"] == 2
    resolved: dict[str, Any] = json.loads((folder / "scenario.json").read_text())
    assert resolved["name"] == "tiny" and resolved["events"][0]["kind"] == "kill_worker"

    columns, timeline = read_csv(folder / "timeline.csv")
    assert tuple(columns) == TIMELINE_COLUMNS
    assert len(timeline) >= 6  # 0.5 s apart over 3 s of load and the drain
    assert timeline[-1]["accepted"] == str(accepted) and timeline[-1]["finished"] == str(accepted)
    finished = [int(row["finished"]) for row in timeline if row["finished"]]
    assert finished == sorted(finished)
    assert {row["broker_up"] for row in timeline} == {"1"}

    columns, events = read_csv(folder / "events.csv")
    assert columns == ["t", "kind", "detail"]
    kinds = [event["kind"] for event in events]
    assert kinds.count("kill_worker") == 1 and "respawn_worker" in kinds
    assert kinds.index("respawn_worker") > kinds.index("kill_worker")
    assert kinds[0] == "load_step" and kinds[-2:] == ["load_end", "drain_end"]

    restarts = outcome["kill_to_restart"]
    assert restarts["kills"] == 1 and restarts["pending"] == 0 and restarts["dead_lettered"] == 0
    assert restarts["restarted"] == restarts["jobs"]  # 0 if the kill found the worker idle
    if restarts["jobs"]:
        assert restarts["max_s"] < 30
    columns, kills = read_csv(folder / "kills.csv")
    assert tuple(columns) == KILLS_COLUMNS and len(kills) == max(1, restarts["jobs"])

    columns, jobs = read_csv(folder / "jobs.csv")
    assert tuple(columns) == JOB_COLUMNS
    assert len(jobs) == accepted and {job["final_status"] for job in jobs} == {"finished"}
    assert json.loads((folder / "outcome.json").read_text()) == outcome
