"""What a cell runs at once: its queue engine, jobs per worker process, total concurrency, processes, and
which of the four corners (inline or queued × sync or async) it belongs to.

Read from summary.csv's columns (docs/architecture.md, "A run folder"); a folder from before the SAQ engine
has no `engine` or `jobs_per_worker`: its queued cells are RQ, one job per worker process.

Total concurrency = requests the server side can hold in progress at once:
- queued: worker processes × jobs per worker (RQ: 1; SAQ: its concurrency C);
- inline threadpool (and blocking): processes × threads (blocking: processes), summary.csv's `concurrency`;
- inline asyncio: no server-side bound, only the upstream bounds it; the figure is what it was offered —
  the users (closed loop) or the requests in flight by Little's law, offered rate × mean latency (open
  loop) — and `upstream_bound` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.run_data import CellSummary, workers_text

DEFAULT_ENGINE = "rq"  # a queued cell without an engine column: every one before SAQ existed
CORNERS = ("inline threadpool", "inline asyncio", "queued RQ", "queued SAQ")
CORNER_OF = {
    ("sync", "threadpool"): "inline threadpool",
    ("sync", "asyncio"): "inline asyncio",
    ("queued", "rq"): "queued RQ",
    ("queued", "saq"): "queued SAQ",
}


def engine(cell: CellSummary) -> str | None:
    """`rq` or `saq` for a queued cell (missing: `rq`), None for an inline one."""
    if cell.architecture != "queued":
        return None
    return (cell.extra.get("engine") or "").strip().lower() or DEFAULT_ENGINE


def jobs_per_worker(cell: CellSummary) -> int | None:
    """Jobs one worker process holds in flight (RQ: 1; missing: 1); None for an inline cell."""
    if cell.architecture != "queued":
        return None
    value = cell.number("jobs_per_worker")
    return int(value) if value and value >= 1 else 1


def corner(cell: CellSummary) -> str | None:
    """One of CORNERS, or None (the blocking baseline, an unknown engine)."""
    kind = engine(cell) if cell.architecture == "queued" else cell.mode
    return CORNER_OF.get((cell.architecture, kind or ""))


def series_mode(cell: CellSummary) -> str:
    """The mode as a series of the report names it: SAQ cells apart from RQ's, per jobs per worker
    (`longpoll SAQ c64`); RQ and inline cells by their mode alone, as before SAQ existed."""
    if engine(cell) != "saq":
        return cell.mode
    return f"{cell.mode} SAQ c{jobs_per_worker(cell)}"


def queued_text(cell: CellSummary) -> str:
    """`queued with 12 workers` (RQ), `queued SAQ with 1 worker process × 12 jobs`."""
    workers = cell.workers or 0
    if engine(cell) != "saq":
        return f"queued with {workers_text(workers)}"
    processes = "1 worker process" if workers == 1 else f"{workers} worker processes"
    return f"queued SAQ with {processes} × {jobs_per_worker(cell)} jobs"


@dataclass(frozen=True)
class Concurrency:
    total: float | None  # requests in progress at once the server side allows (or was offered)
    processes: float | None  # worker processes (queued) or baseline processes (inline)
    upstream_bound: bool  # inline asyncio: no server-side bound; `total` is the load it was offered


def concurrency(cell: CellSummary) -> Concurrency:
    if cell.architecture == "queued":
        workers = cell.workers
        per_worker = jobs_per_worker(cell) or 1
        return Concurrency(None if workers is None else float(workers * per_worker), workers, False)
    processes = cell.number("processes") or 1.0
    bound = cell.number("concurrency")
    if bound:
        return Concurrency(bound, processes, False)
    if cell.load == "closed":
        return Concurrency(None if cell.users is None else float(cell.users), processes, True)
    offered, mean_ms = cell.number("offered_rps"), cell.number("mean_ms")
    in_flight = offered * mean_ms / 1000 if offered is not None and mean_ms is not None else None
    return Concurrency(in_flight, processes, True)
