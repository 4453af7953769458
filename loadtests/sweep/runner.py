"""`ragload bench`: run a profile's cells against both architectures and write a run folder, then its report.

Each cell runs as many trials as the profile (or `--repeats`) says, in rounds (profile.run_order): round k
runs trial k of every cell, so that the trials of two cells compared at one load share their seed and sit
close in time. For each trial: settle (no upstream call in flight), scale the workers or restart the
baseline as the cell needs, reset the queue, seed the mock with the trial's seed and reset its counters and
draws, run Locust headless in subprocesses (never imported here: it patches the process with gevent),
sample the server side every 0.5 s, then keep the measured window (warm-up discarded) and summarise it.
Progress: trial i of n, elapsed, expected remaining.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from loadtests.faults.profile import is_fault_profile
from loadtests.stack.services import free_port
from loadtests.sweep import calibrate
from loadtests.sweep.locust_process import LocustError, LocustRun
from loadtests.sweep.profile import (
    Cell,
    Profile,
    ProfileError,
    estimated_wall_s,
    expand,
    load_profile,
    run_order,
    with_overhead,
)
from loadtests.sweep.run_folder import (
    collect,
    git_revision,
    iso_now,
    machine_facts,
    new_run_dir,
    package_versions,
    write_cell,
    write_json,
)
from loadtests.sweep.sampler import QueueProbe, ServerSampler
from loadtests.sweep.summary import Slo, SloError, summarize, write_summary

DEFAULT_OUT = Path("reports/runs")
QUIET_S = 0.3  # no upstream call in flight and none started for this long: the previous cell is over
SETTLE_MAX_S = 10.0  # longer than this and the system is still draining a backlog: restart or reset it
HTTP_TIMEOUT_S = 5.0
DEFAULT_SAQ_CONCURRENCY = 64  # unused by rq cells; the stack keeps it for its SAQ workers
EXTERNAL_SCALE_WAIT_S = 15.0  # an external autoscaler or `docker compose --scale` may still be catching up


class Target(Protocol):
    """What the sweep needs of the systems under test (EmbeddedStack has all of it)."""

    @property
    def urls(self) -> dict[str, str]: ...
    @property
    def queue_name(self) -> str: ...
    def pids(self) -> dict[str, list[int]]: ...
    def scale_workers(self, n: int) -> None: ...
    def set_engine(self, engine: str, concurrency: int) -> None: ...
    def restart_baseline(self, mode: str, processes: int, threads: int | None = None) -> None: ...
    def reset(self) -> None: ...


class TargetMismatch(RuntimeError):
    """The external systems are not sized as the cell says: its labels and ideal throughput would be wrong."""


@dataclass
class ExternalTarget:
    """`--target api=URL,baseline=URL[,mock=URL][,redis=URL]`: systems someone else runs and sizes.

    The sweep cannot scale them, so it checks instead: before a queued cell, that the broker (when `redis` is
    given) reports the cell's worker count on the queue; before a sync cell, that the baseline's /readyz
    reports the cell's mode, processes and threads. A mismatch stops the run (`--only` picks the cells that
    match), rather than labelling a measurement with a configuration it did not have.
    """

    given: dict[str, str]
    queue_name: str = field(default_factory=lambda: os.environ.get("QUEUE_NAME", "ragload"))
    scale_wait_s: float = EXTERNAL_SCALE_WAIT_S
    engine: str = field(default_factory=lambda: os.environ.get("QUEUE_ENGINE", "rq"))

    def set_engine(self, engine: str, concurrency: int) -> None:
        """The target runs one engine (QUEUE_ENGINE of this process says which): a cell of another stops."""
        if engine != self.engine:
            raise TargetMismatch(
                f"the cell needs the {engine} engine but the target runs {self.engine} (QUEUE_ENGINE): "
                "run only matching cells with --only"
            )

    @property
    def urls(self) -> dict[str, str]:
        return dict(self.given)

    def pids(self) -> dict[str, list[int]]:
        return {}

    def scale_workers(self, n: int) -> None:
        if not self.given.get("redis"):
            return  # nothing to check against: the cell's worker count is taken on trust
        deadline = time.monotonic() + self.scale_wait_s
        while (registered := self._registered_workers()) != n:
            if time.monotonic() >= deadline:
                raise TargetMismatch(
                    f"the cell needs {n} workers but {registered} are registered on queue "
                    f"'{self.queue_name}' of the target: scale them, or run only matching cells with --only"
                )
            time.sleep(0.5)

    def restart_baseline(self, mode: str, processes: int, threads: int | None = None) -> None:
        facts = _json_of_any_status(f"{self.given['baseline']}/readyz") if self.given.get("baseline") else {}
        wanted = {"mode": mode, "processes": processes, **({"threads": threads} if threads else {})}
        found = {key: facts.get(key) for key in wanted}
        if found != wanted:
            raise TargetMismatch(
                f"the cell needs the baseline at {wanted} but the target's /readyz reports {found}: "
                "restart it so, or run only matching cells with --only"
            )

    def _registered_workers(self) -> int:
        from redis import Redis

        from system.engines.broker_state import state_reader

        with Redis.from_url(self.given["redis"]) as connection:
            state = state_reader(self.engine)(connection, self.queue_name)
            return state.busy_workers + state.idle_workers

    def reset(self) -> None:
        if self.given.get("redis"):
            from redis import Redis
            from rq import Queue

            with Redis.from_url(self.given["redis"]) as connection:
                Queue(self.queue_name, connection=connection).empty()


def parse_target(text: str) -> ExternalTarget:
    pairs = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    unknown = set(pairs) - {"api", "baseline", "mock", "redis"}
    if unknown or not pairs:
        raise ValueError(f"--target takes api=URL,baseline=URL[,mock=URL][,redis=URL], got '{text}'")
    urls = {k: v.rstrip("/") for k, v in pairs.items()}
    if "mock" in urls:  # its control API is at the root; accept the OPENAI_BASE_URL form too
        urls["mock"] = urls["mock"].removesuffix("/v1")
    return ExternalTarget(urls)


def _json_of_any_status(url: str) -> dict[str, Any]:
    """The JSON body of a GET, also of an error answer (the baseline's /readyz is 503 while its breaker is
    open, and still says how it is configured)."""
    try:
        return _http_json(url)
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}"))


# ---- the mock's control API --------------------------------------------------------------------------------


def _http_json(url: str, method: str = "GET", body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        raw = response.read()
    return dict(json.loads(raw)) if raw else {}


def wait_quiet(mock_url: str | None, timeout_s: float = SETTLE_MAX_S) -> bool:
    """True once the mock has had no call in flight and none new for QUIET_S (or there is no mock)."""
    if not mock_url:
        time.sleep(QUIET_S)
        return True
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] | None = None
    while time.monotonic() < deadline:
        stats = _http_json(f"{mock_url}/_mock/stats")
        now = (int(stats["in_flight"]), int(stats["requests"]))
        if now[0] == 0 and now == last:
            return True
        last = now
        time.sleep(QUIET_S)
    return False


# ---- one cell ------------------------------------------------------------------------------------------


@dataclass
class SweepState:
    baseline: tuple[str, int, int | None] | None
    started: float = field(default_factory=time.monotonic)
    overheads: list[float] = field(default_factory=list)  # cell wall time beyond warm-up + duration


def prepare(
    cell: Cell, target: Target, state: SweepState, seed: int, latency: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """Make the target ready for `cell`; `latency`: the profile's mock model, applied to the mock (an external
    mock may have been started with another, and the cell's ideal throughput assumes the profile's)."""
    began = time.monotonic()
    mock = target.urls.get("mock")
    target.reset()
    settled = wait_quiet(mock)
    if cell.baseline_key is not None and (cell.baseline_key != state.baseline or not settled):
        mode, processes, threads = cell.baseline_key
        target.restart_baseline(mode, processes, threads)
        state.baseline = cell.baseline_key
    elif not settled and state.baseline is not None:
        # Still busy after SETTLE_MAX_S: the baseline is working through requests its clients gave up on (a
        # thread cannot be cancelled, and a stale request keeps its upstream call). Left running, they would
        # load the upstream under this cell, whichever architecture it measures.
        target.restart_baseline(*state.baseline)
    settled_after = settled or wait_quiet(mock)
    if cell.workers is not None:
        target.set_engine(cell.engine, cell.concurrency or DEFAULT_SAQ_CONCURRENCY)
        target.scale_workers(cell.workers)
    target.reset()
    if mock:
        _http_json(f"{mock}/_mock/config", "PUT", {**(latency or {}), "seed": seed})
        _http_json(f"{mock}/_mock/stats", "DELETE")
    return {
        "settled_before": settled,
        "settled_after_restart": settled_after,
        "prepare_s": round(time.monotonic() - began, 2),
    }


def host_for(cell: Cell, target: Target) -> str:
    key = "api" if cell.architecture == "queued" else "baseline"
    url = target.urls.get(key)
    if not url:
        raise ValueError(f"cell {cell.cell_id} needs the {key} URL (--target {key}=URL)")
    return url


def upstream_calls(mock_url: str) -> dict[str, Any] | None:
    """GET /_mock/calls (each call's request key and latency draw since the last reset), or None from a mock
    that does not offer it."""
    try:
        return _http_json(f"{mock_url}/_mock/calls")
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return None
        raise


def write_upstream_calls(path: Path, calls: Mapping[str, Any]) -> dict[str, Any]:
    """The mock's call log as CSV next to the trial's samples; returns the mean draw per endpoint (ms) and
    their sum, the upstream time the trial's requests actually drew (vs the configured S)."""
    fields = list(calls.get("fields") or [])
    rows = list(calls.get("calls") or [])
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(fields)
        out.writerows(rows)
    if "endpoint" not in fields or "draw_ms" not in fields:
        return {}
    endpoint, draw = fields.index("endpoint"), fields.index("draw_ms")
    means: dict[str, float] = {}
    for name in sorted({row[endpoint] for row in rows}):
        draws = [float(row[draw]) for row in rows if row[endpoint] == name and row[draw] is not None]
        if draws:
            means[name] = round(statistics.fmean(draws), 3)
    return {
        "upstream_calls": len(rows),
        "upstream_draw_mean_ms": means,
        "upstream_draw_ms": round(sum(means.values()), 3) if means else None,
    }


def cell_live_config(profile: Profile, cell: Cell) -> dict[str, object]:
    """What prepare() PUTs on the mock before the cell: its upstream profile's keys (the group's upstream,
    else the profile's), then the latencies the profile sets."""
    return profile.mock.for_upstream(cell.upstream or None).live_config()


def run_cell(
    cell: Cell, target: Target, run_dir: Path, profile: Profile, args: argparse.Namespace, state: SweepState
) -> dict[str, Any]:
    latency = cell_live_config(profile, cell)
    cell_dir = run_dir / "cells" / cell.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    locust = LocustRun(
        cell=cell,
        host=host_for(cell, target),
        samples_dir=cell_dir / "raw",
        log_path=cell_dir / "locust.log",
        generator_processes=args.locust_workers or 1,
        seed=cell.seed,
        probe_interval_s=profile.run.probe_interval_s,
        top_k=profile.run.top_k,
        go_file=cell_dir / "go",
    )
    locust.start()  # its imports overlap the preparation; the load waits for go()
    try:
        extra = prepare(cell, target, state, cell.seed, latency)
    except BaseException:
        locust.kill()
        raise
    queue = QueueProbe(target.urls.get("redis"), target.queue_name, cell.engine)
    locust.go()
    sampler = ServerSampler(target.pids, locust.pids, queue).start()
    try:
        locust.wait()
    finally:
        server_rows = sampler.stop()
        queue.close()
    data = collect(cell, cell_dir / "raw", server_rows, fallback_start=locust.started)
    (cell_dir / "go").unlink(missing_ok=True)
    if not args.keep_raw:
        for path in (cell_dir / "raw").glob("raw-*.csv"):
            path.unlink()
        (cell_dir / "raw").rmdir()
    mock = target.urls.get("mock")
    if mock:
        extra["mock_stats"] = _http_json(f"{mock}/_mock/stats")
        calls = upstream_calls(mock)
        if calls is not None:
            extra.update(write_upstream_calls(cell_dir / "upstream_calls.csv", calls))
    extra["generator_processes"] = locust.generator_processes
    write_cell(cell_dir, cell, data, extra)
    row = summarize(cell, data.samples, data.server, data.late_arrivals, data.completed_ok, args.slo_parsed)
    return {**row, "upstream_draw_ms": extra.get("upstream_draw_ms")}


# ---- progress ------------------------------------------------------------------------------------------


def remaining_s(cells: Sequence[Cell], state: SweepState) -> float:
    overhead = sum(state.overheads) / len(state.overheads) if state.overheads else 5.0
    return sum(c.warmup_s + c.duration_s + overhead for c in cells)


def progress_line(i: int, n: int, cell: Cell, state: SweepState, left: Sequence[Cell]) -> str:
    elapsed = time.monotonic() - state.started
    return f"[{i}/{n}] {cell.cell_id}  elapsed {elapsed:.0f} s, ~{remaining_s(left, state):.0f} s left"


def result_line(row: Mapping[str, Any]) -> str:
    flag = "  GENERATOR SATURATED" if row["generator_saturated"] else ""
    flag += f"  TESTBED-LIMITED ({row['testbed_limited']})" if row.get("testbed_limited") else ""
    late = f", {row['late_arrivals']} late arrivals" if row.get("late_arrivals") else ""
    return (
        f"      {row['requests']} requests, {row['timeouts']} timeouts, {row['errors']} errors; "
        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; {row['throughput_rps']} rps "
        f"of ideal {row['ideal_rps']} ({row['ideal_bound']}); "
        f"generator {row['generator_cpu_pct']} %, machine {row.get('cpu_machine_pct')} %{late}{flag}"
    )


# ---- the command ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default="quick", help="quick | default | full | faults, or a path to a .toml"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"parent folder of the run (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--target",
        help="use running systems instead of starting the embedded stack: "
        "api=URL,baseline=URL[,mock=URL][,redis=URL]; each cell must match how they are sized (checked "
        "against the broker's workers and the baseline's /readyz); the profile's latency is set on the mock",
    )
    parser.add_argument(
        "--locust-workers", type=int, default=0, help="distributed Locust: a master and N worker processes"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="trials of every cell (overrides the profile's `repeats`); each trial has its own seed, shared "
        "by every cell at the same load, and the trials run in interleaved rounds",
    )
    parser.add_argument(
        "--slo",
        default="",
        help="service-level objective for goodput: e2e=DURATION[,submit=DURATION] (submit: queued only); "
        "default: e2e = the deadline",
    )
    parser.add_argument(
        "--only", help="run only the cells whose id (fault profiles: the scenarios whose name) contains this"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the cells and the expected time, run nothing"
    )
    parser.add_argument(
        "--keep-raw", action="store_true", help="keep each generator process's raw sample file"
    )
    parser.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="skip measuring the job path's own time per request at zero upstream latency (shown beside "
        "ideal_rps, which always uses the configured latency alone)",
    )


def start_stack(profile: Profile, cells: Sequence[Cell], run_dir: Path) -> AbstractContextManager[Target]:
    from loadtests.stack.embedded_stack import EmbeddedStack

    queued = [c for c in cells if c.workers is not None]
    first_sync = next((c for c in cells if c.baseline_key is not None), None)
    mode, processes, threads = (
        first_sync.baseline_key if first_sync and first_sync.baseline_key else ("threadpool", 1, None)
    )
    stack = EmbeddedStack(
        api_port=free_port(),
        mock_port=free_port(),
        baseline_port=free_port(),
        workers=(queued[0].workers or 1) if queued else 1,
        baseline_mode=mode,
        baseline_processes=processes,
        baseline_threads=threads,
        mock_args=profile.mock.args(profile.run.seed),
        with_baseline=first_sync is not None,
        # The baseline answers 504 at the same deadline as the clients give up (one deadline for both).
        env={"BASELINE_REQUEST_TIMEOUT_S": str(profile.run.deadline_s)},
        log_dir=run_dir / "logs",
    )
    return stack


def main(args: argparse.Namespace) -> int:
    if is_fault_profile(args.profile):  # `kind = "faults"`: scenarios with faults, not Locust cells
        from loadtests.faults.run import run_profile

        code, run_dir = run_profile(args)
        if run_dir is not None and not args.no_report:
            build(run_dir)
        return code
    try:
        profile = load_profile(args.profile)
        target = parse_target(args.target) if args.target else None
        args.slo_parsed = Slo.parse(getattr(args, "slo", ""))
        if getattr(args, "repeats", None) is not None and args.repeats < 1:
            raise ValueError("--repeats must be at least 1")
    except (ProfileError, SloError, ValueError) as exc:
        print(f"ragload bench: {exc}", file=sys.stderr)
        return 2
    cells = [
        c for c in expand(profile, getattr(args, "repeats", None)) if not args.only or args.only in c.cell
    ]
    if not cells:
        print(f"ragload bench: no cell id contains '{args.only}'", file=sys.stderr)
        return 2
    cells = run_order(cells, profile.run.seed)
    if target is not None and not target.urls.get("mock"):
        # The profile's latency model never reaches an upstream we cannot configure: no ideal to compare with.
        cells = [replace(c, service_time_ms=None, server_capacity_rps=None, upstream_rps=None) for c in cells]
    expected_min = estimated_wall_s(profile, cells) / 60
    names = {c.cell for c in cells}
    print(
        f"profile {args.profile}: {len(names)} cells, {len(cells)} trials, "
        f"expected about {expected_min:.1f} min"
    )
    if args.dry_run:
        for line in dry_run_lines(cells):
            print(line)
        return 0
    run_dir = new_run_dir(args.out)
    print(f"run folder {run_dir}", flush=True)
    meta: dict[str, Any] = {
        "started": iso_now(),
        "git": git_revision(),
        "machine": machine_facts(),
        "packages": package_versions(),
        "command": sys.argv,
        "load_mode": {c.cell_id: c.load for c in cells},
    }
    write_json(run_dir / "meta.json", meta)
    write_json(run_dir / "config.json", run_config(args, profile, cells))
    state = SweepState(baseline=None)
    rows: list[dict[str, Any]] = []
    context: AbstractContextManager[Target] = (
        nullcontext(target) if target else start_stack(profile, cells, run_dir)
    )
    try:
        with context as stack:
            state.baseline = _initial_baseline(cells) if target is None else None
            meta["stack_ready_s"] = round(time.monotonic() - state.started, 1)
            print(f"stack ready after {meta['stack_ready_s']} s: {stack.urls}", flush=True)
            overhead: dict[str, float] = {}
            if args.calibrate and target is None:  # only a stack we size ourselves can be calibrated
                overhead = calibrate.measure(stack.urls, stack.scale_workers, stack.reset)
            meta["overhead_ms"] = overhead
            print(f"job path's own time per request at zero upstream latency (ms): {overhead}", flush=True)
            cells = with_overhead(cells, overhead)
            write_json(run_dir / "config.json", {**run_config(args, profile, cells), "overhead_ms": overhead})
            for i, cell in enumerate(cells, 1):
                print(progress_line(i, len(cells), cell, state, cells[i - 1 :]), flush=True)
                began = time.monotonic()
                row = run_cell(cell, stack, run_dir, profile, args, state)
                state.overheads.append(time.monotonic() - began - cell.warmup_s - cell.duration_s)
                rows.append(row)
                print(result_line(row), flush=True)
                write_summary(run_dir / "summary.csv", rows)
    except (LocustError, urllib.error.URLError, OSError, RuntimeError) as exc:
        print(f"ragload bench: stopped: {exc}", file=sys.stderr)
        meta["error"] = str(exc)
        return 1
    finally:
        meta["ended"] = iso_now()
        meta["wall_s"] = round(time.monotonic() - state.started, 1)
        write_json(run_dir / "meta.json", meta)
    print(f"done in {meta['wall_s'] / 60:.1f} min; summary: {run_dir / 'summary.csv'}")
    if not args.no_report:
        build(run_dir)
    return 0


def _initial_baseline(cells: Sequence[Cell]) -> tuple[str, int, int | None] | None:
    return next((c.baseline_key for c in cells if c.baseline_key is not None), None)


def dry_run_lines(cells: Sequence[Cell]) -> list[str]:
    """Each cell with its trial count and why it is in the profile, then the order the trials run in."""
    first = {c.cell: c for c in sorted(cells, key=lambda c: (c.index, c.trial))}
    lines = [
        f"  {name} ×{cell.repeats}"
        + (f" on {cell.upstream}" if cell.upstream else "")
        + (f" (upstream bound {cell.upstream_rps:g} req/s)" if cell.upstream_rps else "")
        + (f": {cell.why}" if cell.why else "")
        for name, cell in first.items()
    ]
    lines.append("  run order: " + ", ".join(c.cell_id for c in cells))
    return lines


def run_config(args: argparse.Namespace, profile: Profile, cells: Sequence[Cell]) -> dict[str, Any]:
    chat, embed = profile.mock.latency_specs()
    slo: Slo = getattr(args, "slo_parsed", Slo())
    upstream_known = all(c.service_time_ms is not None for c in cells)
    return {
        "profile": args.profile,
        "resolved": profile.model_dump(),
        "deadline_s": profile.run.deadline_s,
        "repeats": sorted({c.repeats for c in cells}),
        "slo": slo.as_dict(),
        # False: --target without a mock: the upstream's latency is unknown, so is every cell's ideal
        "upstream_known": upstream_known,
        "service_time_model": {
            "chat_latency": str(chat),
            "embed_latency": str(embed),
            "chat_mean_ms": round(chat.mean * 1000, 3),
            "embed_mean_ms": round(embed.mean * 1000, 3),
            "service_time_ms": round(profile.mock.service_time_s * 1000, 3),
            "calls_per_request": {"embeddings": 1, "chat": 1},
            **profile.mock.service_time_numbers(),
        },
        "target": args.target or "embedded",
        "locust_workers": args.locust_workers,
        "cells": [c.as_dict() for c in cells],  # in the order they ran
        "upstreams": upstream_facts(profile, cells),
        "expected_wall_s": round(estimated_wall_s(profile, list(cells))),
    }


def upstream_facts(profile: Profile, cells: Sequence[Cell]) -> dict[str, Any]:
    """Per upstream the cells ran against: its mock config, S and, with a capacity knee, the model's curve
    (numbers the report plots and reads; it never imports the mock)."""
    facts: dict[str, Any] = {}
    for name in sorted({c.upstream for c in cells if c.upstream}):
        mock = profile.mock.for_upstream(name)
        curve = mock.curve()
        facts[name] = {
            "config": mock.live_config(),
            "service_time_ms": round(mock.service_time_s * 1000, 3),
            **(curve.as_dict() if curve is not None else {"model": "unbounded"}),
        }
    return facts


def build(run_dir: Path) -> None:
    try:
        from reports.build import build_report
    except ImportError:
        print("no report builder (reports/build.py) in this tree: the run folder is complete without it")
        return
    path = build_report(run_dir)
    print(f"report: {path}")
