"""WORKER_METRICS_PORT: `ragload worker` serves the series of all its worker processes on its own port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.stack.services import ManagedProcess, free_port, ragload_command
from system.rag.prometheus import prepare_multiprocess_dir
from tests.system.test_api import status, submit

JOBS = 4


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def finished_jobs(url: str) -> float:
    try:
        parsed = scrape(url)
    except (urllib.error.URLError, OSError):
        return -1.0  # not serving yet
    return parsed.get(("ragload_jobs_total", frozenset({("engine", "rq"), ("outcome", "finished")})), 0.0)


async def test_worker_serves_the_metrics_of_all_its_processes(
    api: httpx.AsyncClient, queued_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **queued_env,
        **prepare_multiprocess_dir(tmp_path / "worker-metrics"),
        "WORKER_METRICS_PORT": str(port),
    }
    worker = ManagedProcess(
        "worker", ragload_command("worker", "--count", "2"), env=env, log_path=tmp_path / "worker.log"
    ).start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        job_ids = [await submit(api, query=f"What does a job queue decouple? ({n})") for n in range(JOBS)]
        for job_id in job_ids:
            assert (await status(api, job_id, wait=30))["status"] == "finished"
        deadline = time.monotonic() + 30
        while (seen := await asyncio.to_thread(finished_jobs, url)) < JOBS:
            assert worker.alive(), (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{seen} finished jobs on {url}"
            await asyncio.sleep(0.2)
        parsed = await asyncio.to_thread(scrape, url)
    finally:
        worker.stop()

    assert seen == JOBS  # the jobs ran in the pool's forked workers: their files reached the pool's server
    assert parsed[("ragload_llm_request_seconds_count", frozenset({("operation", "chat")}))] == JOBS
    assert parsed[("ragload_job_run_seconds_count", frozenset({("engine", "rq")}))] == JOBS


def test_worker_metrics_port_without_a_multiprocess_dir_is_refused(queued_env: dict[str, str]) -> None:
    env = {**os.environ, **queued_env, "WORKER_METRICS_PORT": str(free_port())}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        ragload_command("worker", "--count", "1"), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr
