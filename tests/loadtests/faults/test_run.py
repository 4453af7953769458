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


# The same on SAQ workers (4 jobs at once each): 3 s jobs, ~20 submitted in the first second, so both workers
# hold jobs when one is SIGKILLed at 2 s, whatever the machine's speed.
TINY_SAQ = {
    "kind": "faults",
    "mock": {"chat_latency": "const:3000ms", "embed_latency": "const:0ms"},
    "scenario": [
        {
            "name": "tiny-saq",
            "engine": "saq",
            "concurrency": 4,
            "workers": 2,
            "load": [{"at_s": 0, "rate": 20}, {"at_s": 1, "rate": 0.001}],
            "duration_s": 3,
            "events": [{"kind": "kill_worker", "every_s": 2, "to_s": 2.5}],
            "drain_limit_s": 90,
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


def run_scenario(tmp_path: Path, spec: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The profile's only scenario on a real embedded stack of its engine; every process gone afterwards."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    profile = parse_fault_profile(spec)
    scenario = profile.scenario[0]
    env = {
        **stack_env(profile),
        "RAGLOAD_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "",
        "OPENAI_BASE_URL": "",
    }
    mock = profile.mock
    stack = EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        workers=scenario.workers,
        engine=scenario.engine,
        worker_concurrency=scenario.concurrency or 1,
        mock_args=("--chat-latency", mock.chat_latency, "--embed-latency", mock.embed_latency),
        with_baseline=False,
        env=env,
        log_dir=tmp_path / "logs",
        ingest_args=[str(docs)],
    )
    folder = tmp_path / "run" / "faults" / scenario.name
    seen: list[int] = []
    try:
        stack.start()
        seen = [pid for pids in stack.pids().values() for pid in pids]
        outcome = ScenarioRun(stack, profile, scenario, 1, 1).run(folder, time.monotonic())
        seen += [pid for pids in stack.pids().values() for pid in pids]
    finally:
        stack.stop()
    assert not [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    return outcome, folder


def check_files(folder: Path, outcome: dict[str, Any], name: str) -> None:
    """Every file of the scenario's folder written, consistent with the outcome: all finished, 0 lost."""
    accepted = outcome["accepted"]
    assert outcome["finished"] == accepted
    assert outcome["lost"] == 0 and outcome["lost_job_ids"] == [] and outcome["dead_lettered"] == 0
    assert outcome["broker"] is None and outcome["breaker"] is None
    assert outcome["max_workers"] == 2
    resolved: dict[str, Any] = json.loads((folder / "scenario.json").read_text())
    assert resolved["name"] == name and resolved["events"][0]["kind"] == "kill_worker"

    columns, timeline = read_csv(folder / "timeline.csv")
    assert tuple(columns) == TIMELINE_COLUMNS
    assert len(timeline) >= 6  # 0.5 s apart over 3 s of load and the drain
    assert timeline[-1]["accepted"] == str(accepted) and timeline[-1]["finished"] == str(accepted)
    assert timeline[-1]["queued"] == "0" and timeline[-1]["running"] == "0"
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


def test_a_tiny_scenario_writes_every_file_and_loses_nothing(tmp_path: Path) -> None:
    outcome, folder = run_scenario(tmp_path, TINY)
    assert 50 < outcome["accepted"] < 200 and outcome["engine"] == "rq"
    check_files(folder, outcome, "tiny")


def test_a_tiny_saq_scenario_restarts_the_killed_workers_jobs_and_loses_nothing(tmp_path: Path) -> None:
    outcome, folder = run_scenario(tmp_path, TINY_SAQ)
    assert 5 < outcome["accepted"] < 60
    assert (outcome["engine"], outcome["concurrency"]) == ("saq", 4)
    check_files(folder, outcome, "tiny-saq")
    restarts = outcome["kill_to_restart"]
    # 3 s jobs, 4 at a time per worker, the kill at 2 s: the victim held jobs, which SAQ's sweep found
    # without heartbeats (≥ 10 s), put back in the queue and another worker started again.
    assert restarts["jobs"] >= 1 and restarts["restarted"] == restarts["jobs"]
    assert restarts["retry_median_s"] is None or restarts["retry_median_s"] >= 10
    _, kills = read_csv(folder / "kills.csv")
    held = {row["job_id"] for row in kills}
    _, jobs = read_csv(folder / "jobs.csv")
    attempts = {job["job_id"]: int(job["attempts"]) for job in jobs}
    assert all(attempts[job_id] == 2 for job_id in held)  # the killed attempt, then the one that finished
    assert outcome["retried"] == len(held)
