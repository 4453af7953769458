from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from loadtests.sampler import SERVER_COLUMNS, CpuMeter, QueueProbe, ServerSampler

BUSY = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])"


def test_cpu_of_a_busy_child_counts_once_per_sample() -> None:
    """A parent listed together with its busy child: the child is measured once, near one full core."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    try:
        time.sleep(0.5)
        meter = CpuMeter()
        pids = meter.expand([parent.pid, parent.pid])
        assert len(pids) == len(set(pids)) == 2
        workers = [parent.pid, *pids]
        sampler = ServerSampler(lambda: {"worker": workers}, lambda: [], QueueProbe(None, "q"), 0.2)
        sampler.start()
        time.sleep(1.1)
        rows = sampler.stop()
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the child too
        parent.wait()
    assert len(rows) >= 3 and set(rows[0]) == set(SERVER_COLUMNS)
    busiest = max(row["cpu_workers"] for row in rows)
    # One busy process: up to 100 % of a core (less on a machine busy with other work), not ~0 (measured
    # twice in one sample) and not ~200 (counted twice).
    assert 20 <= busiest <= 110
    # The whole machine's CPU includes that process (same unit: % of one core).
    assert max(row["cpu_machine"] for row in rows) >= 0.8 * busiest
    assert rows[-1]["cpu_api"] is None and rows[-1]["queue_depth"] is None  # nothing known: empty, not 0
