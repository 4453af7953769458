"""One real run of each chat scenario: Locust headless for ~3 s against a small real stack, in one process
and distributed (a master and two worker processes, as `ragload bench --locust-workers 2` runs it)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.stack.embedded_stack import EmbeddedStack
from loadtests.sweep.locust_process import LocustRun
from loadtests.sweep.profile import Cell
from loadtests.sweep.run_folder import collect
from loadtests.sweep.samples import Sample, read_raw
from loadtests.sweep.summary import summarize


def cell(architecture: str, mode: str, load: str, users: int | None, rate: float | None) -> Cell:
    return Cell(
        index=1,
        cell_id=f"smoke-{architecture}",
        architecture=architecture,
        mode=mode,
        load=load,
        workers=1 if architecture == "queued" else None,
        users=users,
        rate=rate,
        duration_s=2.5,
        warmup_s=0.5,
        deadline_s=5.0,
        service_time_ms=21.0,
        concurrency=4 if architecture == "sync" else None,
    )


def run(the_cell: Cell, host: str, tmp_path: Path) -> dict[str, object]:
    locust = LocustRun(the_cell, host, tmp_path / "raw", tmp_path / "locust.log", seed=3)
    locust.start()
    locust.wait()
    data = collect(the_cell, tmp_path / "raw", [], fallback_start=locust.started)
    kinds = {(s.kind, s.outcome) for s in data.samples}
    assert ("e2e", "ok") in kinds and ("probe", "ok") in kinds, (tmp_path / "locust.log").read_text()
    assert all(0.5 <= s.t <= 3.0 for s in data.samples)
    return summarize(the_cell, data.samples, completed_ok=data.completed_ok)


def test_queued_and_sync_users_write_samples(small_stack: EmbeddedStack, tmp_path: Path) -> None:
    queued = run(cell("queued", "longpoll", "closed", 2, None), small_stack.urls["api"], tmp_path / "q")
    assert queued["requests"] and queued["timeouts"] == 0 and queued["errors"] == 0
    assert queued["submit_p99_ms"] is not None and queued["mean_run_ms"] is not None
    assert queued["mean_polls"] is not None and queued["mean_polls"] >= 1  # type: ignore[operator]

    sync = run(cell("sync", "threadpool", "open", None, 20.0), small_stack.urls["baseline"], tmp_path / "s")
    # Poisson arrivals at 20/s over the 2.5 s window: about 50 requests, independent of response times
    assert 20 <= sync["requests"] <= 90  # type: ignore[operator]
    assert sync["errors"] == 0 and sync["pool_exhausted"] is False


# ---- distributed Locust: a master and two worker processes -----------------------------------------------


def served(metrics_url: str, name: str) -> float:
    """A counter of the server's /metrics, summed over its labels (0 before the first request)."""
    text = httpx.get(metrics_url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def run_distributed(the_cell: Cell, host: str, tmp_path: Path) -> tuple[LocustRun, dict[int, list[Sample]]]:
    """Run the cell on a master + 2 workers; every worker process's raw samples, by its pid."""
    locust = LocustRun(
        the_cell, host, tmp_path / "raw", tmp_path / "locust.log", generator_processes=2, seed=3
    )
    locust.start()
    _master, *workers = locust.procs
    locust.wait()
    log = (tmp_path / "locust.log").read_text()
    raw_files = {path.name for path in (tmp_path / "raw").glob("raw-*.csv")}
    assert raw_files == {f"raw-{worker.pid}.csv" for worker in workers}, log  # the master sends nothing
    return locust, {
        worker.pid: list(read_raw(tmp_path / "raw" / f"raw-{worker.pid}.csv")) for worker in workers
    }


def test_two_generator_processes_share_an_open_loop_cell_and_lose_no_request(
    small_stack: EmbeddedStack, tmp_path: Path
) -> None:
    the_cell = cell("sync", "threadpool", "open", None, 20.0)
    metrics = f"{small_stack.urls['baseline']}/metrics"
    before = served(metrics, "ragload_baseline_requests_total")

    locust, by_worker = run_distributed(the_cell, small_stack.urls["baseline"], tmp_path)
    answered = served(metrics, "ragload_baseline_requests_total") - before

    chats = {pid: [s for s in samples if s.kind == "e2e"] for pid, samples in by_worker.items()}
    all_chats = [s for samples in chats.values() for s in samples]
    assert len(all_chats) == answered  # every request the baseline answered has exactly one sample
    assert len({s.t for s in all_chats}) == len(all_chats)  # the two streams are not copies of each other
    data = collect(the_cell, tmp_path / "raw", [], fallback_start=locust.started)
    window = (the_cell.warmup_s, the_cell.warmup_s + the_cell.duration_s)
    for pid, samples in chats.items():  # each process ran its own Poisson stream at rate / 2, in the window
        assert all(s.outcome == "ok" for s in samples), pid
        in_window = [s for s in samples if window[0] <= s.t - data.start <= window[1]]
        assert len(in_window) >= 5, (pid, len(samples), len(in_window))
    merged = [s for s in data.samples if s.kind == "e2e"]
    assert len(merged) + sum(1 for s in all_chats if s.t - data.start < the_cell.warmup_s) == len(all_chats)
    assert sum(1 for s in data.samples if s.kind == "probe") >= 3  # the one probe user, on one of them
    summary = summarize(the_cell, data.samples, completed_ok=data.completed_ok)
    # Poisson arrivals at 20/s over the 2.5 s window, from the two processes together (as one process does)
    assert 20 <= summary["requests"] <= 90  # type: ignore[operator]
    assert summary["errors"] == 0 and summary["timeouts"] == 0 and summary["pool_exhausted"] is False


def test_two_generator_processes_share_a_closed_loop_cell(small_stack: EmbeddedStack, tmp_path: Path) -> None:
    the_cell = cell("queued", "longpoll", "closed", 4, None)
    metrics = f"{small_stack.urls['api']}/metrics"
    before = served(metrics, "ragload_jobs_accepted_total")

    locust, by_worker = run_distributed(the_cell, small_stack.urls["api"], tmp_path)
    accepted = served(metrics, "ragload_jobs_accepted_total") - before

    chats = {pid: [s for s in samples if s.kind == "e2e"] for pid, samples in by_worker.items()}
    assert all(len(samples) >= 3 for samples in chats.values()), {p: len(s) for p, s in chats.items()}
    all_chats = [s for samples in chats.values() for s in samples]
    assert all(s.outcome == "ok" and s.status == 200 for s in all_chats)
    submits = [s for samples in by_worker.values() for s in samples if s.kind == "submit"]
    assert len(submits) == accepted and len(all_chats) == accepted  # each job submitted once, seen once
    data = collect(the_cell, tmp_path / "raw", [], fallback_start=locust.started)
    summary = summarize(the_cell, data.samples, completed_ok=data.completed_ok)
    assert summary["requests"] and summary["timeouts"] == 0 and summary["errors"] == 0
