"""The tether: parts started by a process die with it, however it dies, in order and children included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from loadtests.stack.tether import STOP_GRACE_S, watch
from tests.loadtests.stack.stack_helpers import alive, wait_gone

GONE_BOUND_S = 2 * STOP_GRACE_S + 30.0  # the watchdog's two waves at their longest, and a busy machine
# Traps SIGTERM, takes argv[2] seconds before it exits (a worker finishing its job), then notes under the
# label argv[3] when it did.
NOTES_ITS_STOP = """
import signal, sys, time
def stop(*_):
    time.sleep(float(sys.argv[2]))
    open(sys.argv[1], "a").write(f"{sys.argv[3]} {time.time()!r}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(600)
"""
IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""
# A supervisor as `ragload up` is one: parts started through ManagedProcess, one of them from a thread
# that has ended since (PR_SET_PDEATHSIG would fire then), each part with a child of its own.
SUPERVISOR = """
import threading, time
from loadtests.stack.services import ManagedProcess
parts = []
def start():
    parts.append(ManagedProcess("part", ["sh", "-c", "sleep 600 & sleep 600; :"]).start())
thread = threading.Thread(target=start)
thread.start()
thread.join()
start()
print(" ".join(str(part.pid) for part in parts), flush=True)
time.sleep(600)
"""


def start_group(script: str, *args: str) -> subprocess.Popen[str]:
    """A python process in a session of its own, reaped by a thread as soon as it exits."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def test_the_watchdog_stops_what_is_held_parts_first_then_the_broker(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    first = start_group(NOTES_ITS_STOP, str(notes), "0.5", "first")
    last = start_group(NOTES_ITS_STOP, str(notes), "0", "last")
    stubborn = start_group(IGNORES_SIGTERM)
    released = start_group(IGNORES_SIGTERM)
    procs = [first, last, stubborn, released]
    read_fd, write_fd = os.pipe()
    try:
        held = [f"+{first.pid}", f"+{last.pid} last", f"+{stubborn.pid}", f"+{released.pid}"]
        os.write(write_fd, "".join(f"{line}\n" for line in [*held, f"-{released.pid}"]).encode())
        os.close(write_fd)  # what the kernel does when the supervisor dies
        with os.fdopen(read_fd, "rb") as stream:
            watch(stream, grace=1.0)
        wait_gone([first.pid, last.pid, stubborn.pid], GONE_BOUND_S)
        assert stubborn.returncode == -signal.SIGKILL  # SIGTERM ignored: SIGKILL after the grace
        assert alive([released.pid]) == [released.pid]  # released: not the watchdog's any more
        noted = dict(line.split() for line in notes.read_text().splitlines())
        assert float(noted["last"]) >= float(noted["first"])  # the broker stops once the other parts are gone
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_parts_die_with_a_killed_supervisor_children_and_thread_started_ones_included() -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True)
    parts: list[int] = []
    try:
        assert supervisor.stdout is not None
        parts = [int(pid) for pid in supervisor.stdout.readline().split()]
        assert len(parts) == 2
        members = group_members(parts)
        deadline = time.monotonic() + GONE_BOUND_S
        while len(members) < 4 and time.monotonic() < deadline:  # each part's shell and its two sleeps
            time.sleep(0.05)
            members = group_members(parts)
        assert len(members) >= 4, members
        supervisor.kill()
        supervisor.wait()
        wait_gone(members, GONE_BOUND_S)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        for pgid in parts:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def group_members(pgids: list[int]) -> list[int]:
    """Every process of the process groups `pgids`."""
    members = []
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            if os.getpgid(pid) in pgids:
                members.append(pid)
        except ProcessLookupError:
            pass
    return members
