from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import psutil

from loadtests.sweep.sampler import SERVER_COLUMNS, CpuMeter, QueueProbe, ServerSampler

BUSY = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])"


def cpu_seconds(pids: list[int]) -> float:
    times = [psutil.Process(pid).cpu_times() for pid in pids]
    return sum(t.user + t.system for t in times)


def test_cpu_of_a_busy_child_counts_once_per_sample() -> None:
    """A parent listed together with its busy child: the child is measured once, not 0 and not twice.

    Judged against the CPU the processes really used in the same window (psutil's cpu_times), not against
    one full core: on a busy machine the loop gets less than a core, and the sampler must say so."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    try:
        time.sleep(0.5)
        meter = CpuMeter()
        pids = meter.expand([parent.pid, parent.pid])
        assert len(pids) == len(set(pids)) == 2
        workers = [parent.pid, *pids]
        sampler = ServerSampler(lambda: {"worker": workers}, lambda: [], QueueProbe(None, "q"), 0.2)
        used_before, started = cpu_seconds(pids), time.monotonic()
        sampler.start()
        time.sleep(1.1)
        rows = sampler.stop()
        used_pct = 100 * (cpu_seconds(pids) - used_before) / (time.monotonic() - started)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the child too
        parent.wait()
    assert len(rows) >= 3 and set(rows[0]) == set(SERVER_COLUMNS)
    sampled_pct = statistics.fmean(row["cpu_workers"] for row in rows)
    assert used_pct > 5  # the loop ran at all, so the comparison below means something
    assert 0.5 < sampled_pct / used_pct < 1.5  # counted twice would read 2, not seen would read 0
    busiest = max(row["cpu_workers"] for row in rows)
    # The whole machine's CPU includes that process (same unit: % of one core).
    assert max(row["cpu_machine"] for row in rows) >= 0.8 * busiest
    assert rows[-1]["cpu_api"] is None and rows[-1]["queue_depth"] is None  # nothing known: empty, not 0


HOLD = "import sys, time\nheld = b'x' * ({mib} * 1024 * 1024)\nprint('held', flush=True)\ntime.sleep(60)"
# A worker with a helper process of its own (as RQ's scheduler process under one worker of the pool)
HELPER = (
    "import subprocess, sys, time\n"
    "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "held = b'x' * (80 * 1024 * 1024)\nprint('held', flush=True)\ntime.sleep(60)"
)
POOL = (
    "import subprocess, sys, time\n"
    "children = [subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)"
    " for code in sys.argv[1:]]\n"
    "for child in children: child.stdout.readline()\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)"
)


def vm_rss_mib(pid: int) -> float:
    """RSS as the kernel reports it in /proc/PID/status (read without psutil, to check the sampler)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_memory_of_a_pool_counts_each_worker_process_once() -> None:
    """A pool parent with two workers holding 40 and 80 MiB, the second with a helper process of its own:
    the role's sum covers all four processes, the per-process mean the two workers only (the parent is a
    supervisor, the helper no worker), and a role without processes is empty, not 0."""
    pool = subprocess.Popen(
        [sys.executable, "-c", POOL, HOLD.format(mib=40), HELPER],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert pool.stdout is not None and pool.stdout.readline().strip() == "ready"
        workers = [c.pid for c in psutil.Process(pool.pid).children()]
        helpers = [c.pid for pid in workers for c in psutil.Process(pid).children()]
        sampler = ServerSampler(lambda: {"worker": [pool.pid]}, lambda: [], QueueProbe(None, "q"))
        row = sampler.sample()
        kernel = [vm_rss_mib(pid) for pid in (pool.pid, *workers, *helpers)]
    finally:
        os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()
    assert len(workers) == 2 and len(helpers) == 1 and set(row) == set(SERVER_COLUMNS)
    assert row["processes_workers"] == 2
    assert abs(row["rss_workers_mb"] - sum(kernel)) < 0.05 * sum(kernel)  # the same pages, read twice
    workers_mean = (kernel[1] + kernel[2]) / 2
    assert abs(row["rss_worker_process_mb"] - workers_mean) < 0.05 * workers_mean
    assert row["rss_worker_process_mb"] > 60  # the mean of what the two workers hold, the parent left out
    assert row["rss_workers_mb"] > 120 + kernel[0] + kernel[3] * 0.9  # the parent and the helper in the sum
    for column in ("rss_api_mb", "processes_api", "rss_api_process_mb", "rss_baseline_mb"):
        assert row[column] is None
