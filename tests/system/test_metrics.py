"""`/metrics` exposes the issue's series: rendered for real, parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.worker import WorkerStatus
from starlette.applications import Starlette
from starlette.testclient import TestClient

from system.metrics import (
    ADMISSION_REJECTIONS,
    JOBS_ACCEPTED,
    BrokerCollector,
    count_job_failure,
    record_job_finished,
)
from system.rag.errors import UpstreamTimeout, UpstreamUnavailable
from system.rag.llm_metrics import observe_llm
from system.rag.prometheus import metrics_route, prepare_multiprocess_dir, render_metrics
from system.retry_policy import on_job_failure

QUEUE = "ragload-metrics-test"
REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "ragload-dashboard.json"

# The series the issue names, as exposed (counters end in _total, histograms in _bucket/_sum/_count).
EVENT_SERIES = {
    "ragload_jobs_accepted_total",
    "ragload_jobs_total",  # outcome = finished | retried | dead_lettered
    "ragload_job_queue_wait_seconds_bucket",
    "ragload_job_run_seconds_bucket",
    "ragload_job_end_to_end_seconds_bucket",
    "ragload_llm_request_seconds_bucket",
    "ragload_llm_errors_total",
    "ragload_retries_total",
    "ragload_admission_rejections_total",
}
STATE_SERIES = {"ragload_queue_depth", "ragload_workers", "ragload_registry_jobs", "ragload_breaker_state"}


def job_that_fails() -> None:
    raise UpstreamTimeout("the LLM upstream did not answer in time [test]")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    connection = Redis.from_url(redis_url)
    yield Queue(QUEUE, connection=connection)
    connection.close()


def test_events_are_counted_where_they_happen(queue: Queue) -> None:
    def current(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "retried": current("ragload_jobs_total", engine="rq", outcome="retried"),
        "dead": current("ragload_jobs_total", engine="rq", outcome="dead_lettered"),
        "retry": current("ragload_retries_total", engine="rq", layer="job", reason="timeout"),
        "llm": current("ragload_llm_errors_total", operation="chat", kind="unavailable"),
    }
    queue.enqueue(job_that_fails, retry=Retry(max=1, interval=0))
    SimpleWorker(
        [queue], connection=queue.connection, exception_handlers=[on_job_failure, count_job_failure]
    ).work(burst=True)
    with pytest.raises(UpstreamUnavailable), observe_llm("chat"):
        raise UpstreamUnavailable("the LLM upstream failed (503)")

    assert current("ragload_jobs_total", engine="rq", outcome="retried") == before["retried"] + 1
    assert current("ragload_jobs_total", engine="rq", outcome="dead_lettered") == before["dead"] + 1
    assert current("ragload_retries_total", engine="rq", layer="job", reason="timeout") == before["retry"] + 1
    assert current("ragload_llm_errors_total", operation="chat", kind="unavailable") == before["llm"] + 1


def test_exposition_has_every_named_series(queue: Queue) -> None:
    JOBS_ACCEPTED.labels("rq").inc()
    ADMISSION_REJECTIONS.labels("rq", "queue_full").inc()
    record_job_finished(queue_wait_s=0.02, run_s=0.3, end_to_end_s=0.35)
    with observe_llm("embed"):
        pass
    with pytest.raises(UpstreamUnavailable), observe_llm("chat"):
        raise UpstreamUnavailable("down")
    queue.enqueue(job_that_fails, retry=Retry(max=1, interval=0))
    SimpleWorker(
        [queue], connection=queue.connection, exception_handlers=[on_job_failure, count_job_failure]
    ).work(burst=True)
    for n in range(3):
        queue.enqueue(job_that_fails, n)  # waiting
    busy = SimpleWorker([queue], connection=queue.connection)
    busy.register_birth()
    busy.set_state(WorkerStatus.BUSY)
    idle = SimpleWorker([queue], connection=queue.connection)
    idle.register_birth()
    idle.set_state(WorkerStatus.IDLE)

    text = render_metrics(
        [BrokerCollector(queue.connection, QUEUE, breaker_state=lambda: "half-open")]
    ).decode()
    parsed = samples(text)
    names = {name for name, _ in parsed}
    assert EVENT_SERIES | STATE_SERIES <= names, sorted((EVENT_SERIES | STATE_SERIES) - names)
    assert value(parsed, "ragload_broker_up", engine="rq") == 1
    assert value(parsed, "ragload_queue_depth", engine="rq") == 3
    assert (
        value(parsed, "ragload_registry_jobs", engine="rq", registry="failed") == 1
    )  # the dead-letter queue
    assert value(parsed, "ragload_workers", engine="rq", state="busy") == 1
    assert value(parsed, "ragload_workers", engine="rq", state="idle") == 1
    assert value(parsed, "ragload_breaker_state", state="half-open") == 1
    assert value(parsed, "ragload_breaker_state", state="open") == 0


def test_broker_down_is_reported_not_raised() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    parsed = samples(render_metrics([BrokerCollector(unreachable, QUEUE)]).decode())
    assert value(parsed, "ragload_broker_up", engine="rq") == 0
    assert not any(name == "ragload_queue_depth" for name, _ in parsed)


WRITER_SCRIPT = """
import sys
from system.metrics import JOBS_ACCEPTED, record_job_finished
from system.rag.llm_metrics import observe_llm
for _ in range(int(sys.argv[1])):
    JOBS_ACCEPTED.labels("rq").inc()
    record_job_finished(queue_wait_s=0.01, run_s=0.2, end_to_end_s=0.25)
    with observe_llm("chat"):
        pass
"""


def test_multiprocess_mode_merges_every_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes (say an API process and a worker) write; one render sees the sum of both."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale file of an earlier run")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **prepare_multiprocess_dir(metrics_dir)}
    assert not any(metrics_dir.iterdir())
    for count in ("2", "3"):
        subprocess.run([sys.executable, "-c", WRITER_SCRIPT, count], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    parsed = samples(render_metrics().decode())
    assert value(parsed, "ragload_jobs_accepted_total", engine="rq") == 5
    assert value(parsed, "ragload_jobs_total", engine="rq", outcome="finished") == 5
    assert value(parsed, "ragload_job_run_seconds_count", engine="rq") == 5
    assert value(parsed, "ragload_llm_request_seconds_count", operation="chat") == 5


def test_metrics_route_serves_the_text_format(queue: Queue) -> None:
    app = Starlette()
    app.add_route("/metrics", metrics_route(lambda: [BrokerCollector(queue.connection, QUEUE)]))
    queue.enqueue(job_that_fails)
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert value(samples(response.text), "ragload_queue_depth", engine="rq") == 1


def test_dashboard_queries_only_series_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bragload_[a-z_]+", expr)}
    exposed = (
        EVENT_SERIES
        | STATE_SERIES
        | {
            "ragload_broker_up",
            "ragload_breaker_transitions_total",
        }
    )
    histogram_bases = {name.removesuffix("_bucket") for name in EVENT_SERIES if name.endswith("_bucket")}
    exposed |= {f"{base}_{suffix}" for base in histogram_bases for suffix in ("bucket", "sum", "count")}
    assert used and used <= exposed, sorted(used - exposed)
    covered = {name.removesuffix("_bucket").removesuffix("_total") for name in used}
    wanted = {name.removesuffix("_bucket").removesuffix("_total") for name in EVENT_SERIES | STATE_SERIES}
    assert wanted <= covered, sorted(wanted - covered)
