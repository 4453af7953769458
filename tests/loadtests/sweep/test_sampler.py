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
