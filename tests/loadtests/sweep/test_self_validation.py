"""The harness measured against what queueing theory says it must find (issue 14, item 7).

One real `ragload bench` run against the embedded stack, the mock at a constant latency (S = 500 ms), then:
- closed loop, W = 2 workers kept busy: throughput W/S (its trials' t interval covers the rate W busy workers
  reach with the job time the workers themselves recorded, and lies within [75 %, 102 %] of W/S);
- the same closed-loop cell twice (two groups, the same seeds: the same schedule run twice): the two
  throughput intervals overlap;
- open loop at ρ ≈ 0.6 on 2 workers: the mean queue wait is what a first-come-first-served queue of 2
  servers gives on the very same arrival times and job times (within 10 %), and the report's M/D/c formula
  gives the mean of such queues over Poisson schedules (within 10 %,
  test_mdc_formula_predicts_the_mean_wait_of_simulated_queues). Together: the measured wait is the formula's,
  with the luck of one schedule taken out by common random numbers (one short schedule alone strays ±30 %
  from the steady-state mean). The queue the model describes serves each job for as long as its worker
  took plus the worker's time between jobs (measured in the same run: W / closed-loop throughput minus the
  job time), and a job that finds a worker free still waits for the worker to fetch it (measured in the same
  trial: the median wait of the jobs the model lets start at once); a busy machine lengthens both.

These test the harness, not the machine's speed: every bound is a ratio within the run, generous where the
machine's load can move it (a busy machine lengthens each job; the job times then come from the run itself).
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterator, Sequence

import pytest

from loadtests.locust.shapes import PoissonArrivals
from loadtests.sweep.samples import Sample, read_raw
from reports.queueing import mdc_mean_wait
from reports.run_data import CellSummary, RunData, load_run
from tests.loadtests.sweep.embedded_bench import run_bench

SERVICE_S = 0.5  # const 490 ms chat + const 10 ms embeddings
WORKERS = 2
OPEN_RATE = 2.4  # ρ = 2.4 × 0.5 / 2 = 0.6
PROFILE = f"""
[run]
warmup_s = 1
duration_s = 6
deadline_s = 20
seed = 11
repeats = 3

[mock]
chat_latency = "const:490ms"
embed_latency = "const:10ms"

[[group]]
architecture = "queued"
mode = "longpoll"
load = "closed"
workers = [{WORKERS}]
users = [{3 * WORKERS}]

[[group]]
architecture = "queued"
mode = "longpoll"
load = "closed"
workers = [{WORKERS}]
users = [{3 * WORKERS}]

[[group]]
architecture = "queued"
mode = "longpoll"
load = "open"
workers = [{WORKERS}]
rates = [{OPEN_RATE}]
"""


def fifo_waits(arrivals: Sequence[float], services: Sequence[float], servers: int) -> list[float]:
    """Queue waits of a first-come-first-served queue with `servers` servers (arrivals sorted)."""
    free = [0.0] * servers
    waits = []
    for arrival, service in zip(arrivals, services, strict=True):
        ready = heapq.heappop(free)
        start = max(arrival, ready)
        waits.append(start - arrival)
        heapq.heappush(free, start + service)
    return waits


def test_mdc_formula_predicts_the_mean_wait_of_simulated_queues() -> None:
    """The report's M/D/c formula (Cosmetatos) against the mean wait of 300 simulated M/D/c queues."""
    rate, service_rate = OPEN_RATE, 1 / SERVICE_S
    means = []
    for seed in range(300):
        arrivals = list(PoissonArrivals(rate, 60.0, pool=1, seed=seed).offsets())
        means.append(statistics.fmean(fifo_waits(arrivals, [SERVICE_S] * len(arrivals), WORKERS)))
    predicted = mdc_mean_wait(rate, service_rate, WORKERS)
    assert statistics.fmean(means) == pytest.approx(predicted, rel=0.10)


@pytest.fixture(scope="module")
def run(rag_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunData]:
    """One bench run of PROFILE (raw files kept: the open-loop check needs the warm-up's requests too)."""
    yield load_run(run_bench(PROFILE, rag_env, tmp_path_factory.mktemp("self-validation"), "--keep-raw"))


def closed_cells(run: RunData) -> list[CellSummary]:
    return sorted((c for c in run.cells if c.load == "closed"), key=lambda c: c.cell_id)


def mean_run_ms(cell: CellSummary) -> float:
    """The job time the workers recorded (RQ started → ended), over every trial."""
    runs = [t.number("mean_run_ms") for t in cell.runs]
    return statistics.fmean(r for r in runs if r is not None)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_closed_loop_with_w_workers_measures_w_over_s(run: RunData) -> None:
    cell = closed_cells(run)[0]
    throughput = cell.stats.throughput
    assert throughput is not None and throughput.known and throughput.n == 3
    ideal = WORKERS / SERVICE_S
    assert 0.75 * ideal <= throughput.estimate <= 1.02 * ideal, throughput
    # W workers always busy complete W jobs per job time: the time each job took on its worker (the
    # configured S plus the job path's own time, longer on a busy machine), plus a few ms between jobs.
    busy_rate = WORKERS / (mean_run_ms(cell) / 1000)
    assert throughput.low is not None and throughput.high is not None
    assert throughput.low * 0.95 <= busy_rate <= throughput.high * 1.10, (throughput, busy_rate)
    ratio = cell.stats.ratio
    assert ratio is not None and ratio.estimate == pytest.approx(throughput.estimate / ideal, rel=0.02)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_same_schedule_twice_gives_overlapping_intervals(run: RunData) -> None:
    first, second = closed_cells(run)
    assert [t.seed for t in first.runs] == [t.seed for t in second.runs]  # the same schedule, run twice
    assert first.stats.throughput is not None and second.stats.throughput is not None
    assert first.stats.throughput.overlaps(second.stats.throughput)
    assert first.stats.timeout_rate is not None and second.stats.timeout_rate is not None
    assert first.stats.timeout_rate.overlaps(second.stats.timeout_rate)


def trial_requests(run: RunData, trial_id: str) -> list[Sample]:
    """Every answered request of a trial, warm-up included (the raw files kept by --keep-raw), in order."""
    raw = [s for path in (run.run_dir / "cells" / trial_id / "raw").glob("raw-*.csv") for s in read_raw(path)]
    return sorted((s for s in raw if s.kind == "e2e" and s.outcome == "ok"), key=lambda s: s.t)


def between_jobs_s(run: RunData) -> float:
    """A worker's time between two jobs (after one ends, before the next starts), from the closed-loop cells
    of this run, where every worker is always busy: W / throughput is a job's cycle, the job is run_ms."""
    gaps = [
        WORKERS / t.throughput_rps - (t.number("mean_run_ms") or 0) / 1000
        for cell in closed_cells(run)
        for t in cell.runs
        if t.throughput_rps
    ]
    return max(0.0, statistics.fmean(gaps))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_open_loop_queue_wait_is_the_md_c_queues_on_the_same_arrivals(run: RunData) -> None:
    (cell,) = [c for c in run.cells if c.load == "open"]
    gap = between_jobs_s(run)
    assert gap < 0.1 * SERVICE_S  # a few ms on an idle machine; far more would not be a queue of 2 servers
    measured: list[float] = []
    modelled: list[float] = []
    for trial in cell.runs:
        requests = trial_requests(run, trial.trial_id)
        assert len(requests) >= 10 and trial.timeouts == 0
        # Arrivals as scheduled (the same Poisson times for any system at this load and trial), each job as
        # long as its worker took (RQ started → ended) plus the time between jobs: the queue M/D/c describes.
        arrivals = [s.t + s.lag_ms / 1000 for s in requests]
        model = fifo_waits(arrivals, [(s.run_ms or 0.0) / 1000 + gap for s in requests], WORKERS)
        waits = [(s.queue_wait_ms or 0.0) / 1000 for s in requests]
        fetch = statistics.median([w for w, m in zip(waits, model, strict=True) if m == 0] or [0.0])
        measured += waits
        modelled += [m + fetch for m in model]
    mean_measured, mean_modelled = statistics.fmean(measured), statistics.fmean(modelled)
    assert mean_measured == pytest.approx(mean_modelled, rel=0.10, abs=0.010), (mean_measured, mean_modelled)
