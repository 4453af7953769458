"""The parts die with their supervisor: a watchdog process stops every part a dead supervisor left behind.

Each part of the stack runs in a process group and session of its own (services.py), so that Ctrl-C in a
terminal reaches the supervisor alone, which then stops the parts in order (workers finish their job first).
The price: a supervisor that dies without stopping them — `kill -9`, the OOM killer, a crash — would leave
Valkey, the mock, the API, the workers and the baseline running, holding their ports.

The tether closes that gap. The first part a process starts also starts this module as a watchdog
(`python -m loadtests.stack.tether`, in a session of its own, so that no terminal signal reaches it), its
stdin the read end of a pipe whose write end only the supervisor holds. The supervisor writes `+PGID` for
each process group it starts (`+PGID last` for the broker) and `-PGID` once the group is gone. However the
supervisor dies, the kernel closes the write end: the watchdog reads end-of-file and stops the groups still
registered as `ManagedProcess.stop` does — SIGTERM to the whole group (RQ's warm shutdown, uvicorn's
graceful one), SIGKILL after STOP_GRACE_S — the parts first, then the broker (so that a worker's last result
is stored). A supervisor that stopped its parts itself has registered none left: the watchdog just exits.

Why not `prctl(PR_SET_PDEATHSIG)`: it reaches a direct child only (uvicorn's and RQ's pool processes are
grandchildren, which the group signal reaches), it fires when the *thread* that started the child ends (the
autoscaler's thread starts workers), it is Linux only, and it cannot follow SIGTERM with a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO

STOP_GRACE_S = 10.0  # a worker finishing its job gets this long before SIGKILL (ManagedProcess.stop too)
POLL_S = 0.05


def group_alive(pgid: int) -> bool:
    """True while any process of the process group `pgid` still exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal still exists
        return True
    return True


def signal_groups(pgids: Iterable[int], signum: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_groups(pgids: list[int], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM every group, SIGKILL whatever is left of them after `grace` seconds."""
    signal_groups(pgids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(group_alive(pgid) for pgid in pgids) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    signal_groups([pgid for pgid in pgids if group_alive(pgid)], signal.SIGKILL)


class Tether:
    """The supervisor's end: a watchdog process and the pipe that tells it which groups to stop."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()  # both ends close on exec: no part inherits the write end
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-m", __name__, str(os.getpid())], stdin=read_fd, start_new_session=True
            )
        finally:
            os.close(read_fd)
        self._lock = threading.Lock()
        self._broken = False

    def hold(self, pgid: int, last: bool = False) -> None:
        """Stop group `pgid` if this process dies before `release(pgid)`; `last`: after the other groups."""
        self._send(f"+{pgid}{' last' if last else ''}\n")

    def release(self, pgid: int) -> None:
        """Group `pgid` is gone (or stopped by us): the watchdog forgets it."""
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            if self._broken:
                return
            try:
                os.write(self._write_fd, line.encode())  # < PIPE_BUF: one atomic write
            except BrokenPipeError:
                self._broken = True
                print(
                    f"ragload: the watchdog (pid {self.watchdog.pid}) is gone: if this process is killed, "
                    "the parts it started keep running",
                    file=sys.stderr,
                    flush=True,
                )

    def close_in_child(self) -> None:
        """In a child forked from the supervisor: drop the write end, whose copy would hide its death."""
        os.close(self._write_fd)


_tether: Tether | None = None
_tether_lock = threading.Lock()


def tether() -> Tether:
    """This process's tether, started on first use."""
    global _tether
    with _tether_lock:
        if _tether is None:
            _tether = Tether()
        return _tether


def _forget_in_child() -> None:
    global _tether
    if _tether is not None:
        _tether.close_in_child()
        _tether = None


os.register_at_fork(after_in_child=_forget_in_child)


def watch(stream: IO[bytes], supervisor: str = "?", grace: float = STOP_GRACE_S) -> None:
    """Read `+PGID [last]` / `-PGID` lines until end-of-file, then stop the groups still held."""
    held: dict[int, bool] = {}  # pgid -> stopped last
    for raw in stream:
        op, _, rest = raw.decode().strip().partition(" ")
        if op.startswith("+"):
            held[int(op[1:])] = rest == "last"
        elif op.startswith("-"):
            held.pop(int(op[1:]), None)
    left = [pgid for pgid in held if group_alive(pgid)]
    if not left:
        return
    try:
        print(
            f"ragload: the supervisor (pid {supervisor}) is gone; stopping the {len(left)} part(s) it left: "
            + " ".join(map(str, left)),
            file=sys.stderr,
            flush=True,
        )
    except OSError:  # its terminal may be gone with it
        pass
    stop_groups([pgid for pgid in left if not held[pgid]], grace)
    stop_groups([pgid for pgid in left if held[pgid]], grace)


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGHUP):  # only end-of-file ends the watch
        signal.signal(signum, signal.SIG_IGN)
    watch(sys.stdin.buffer, sys.argv[1] if len(sys.argv) > 1 else "?")


if __name__ == "__main__":
    main()
