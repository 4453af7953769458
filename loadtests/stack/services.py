"""Start, wait for and stop the processes of the stack (mock, API, workers, baseline).

Shared by the `ragload up` supervisor, the sweep runner and the test fixtures, so that every one of
them starts a service the same way and never leaves an orphan behind: every process started here is held
by the tether (loadtests/stack/tether.py) until it is stopped, so that it dies with its supervisor too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import psutil

from loadtests.stack.tether import STOP_GRACE_S, group_alive, tether

READY_TIMEOUT_S = 60.0  # a cold start imports FastAPI, the openai SDK and loads the index


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (never a well-known one like 6379 by surprise)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on (or holds) `host:port`, so a server started there would fail."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now (e.g. uvicorn's or RQ's worker processes)."""
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def stop_all(processes: Iterable[ManagedProcess], grace: float = STOP_GRACE_S) -> None:
    """Stop several processes at once: SIGTERM every group first, then wait for all within one `grace`."""
    processes = list(processes)
    for process in processes:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        process.stop(grace=max(0.0, deadline - time.monotonic()))


def ragload_command(*args: str) -> list[str]:
    """The command line that runs `ragload ARGS…` with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "loadtests.cli", *args]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


class ManagedProcess:
    """A child process in its own process group, so that stopping it stops its children too.

    Held by the tether from `start()` to the end of `stop()`: if this process dies first, the watchdog stops
    the group (`stops_last`: after the other parts, as the broker is). `pass_fds` are inherited by the child.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        ready_url: str | None = None,
        log_path: Path | None = None,
        *,
        stops_last: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self.log_path = log_path
        self.stops_last = stops_last
        self.pass_fds = tuple(pass_fds)
        self.proc: subprocess.Popen[bytes] | None = None
        self._terminating = False  # SIGTERM sent: a second one would turn RQ's warm shutdown into a cold one

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ManagedProcess:
        watchdog = tether()  # started before the child, so that no child is ever without one
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - the child keeps its own copy
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
                pass_fds=self.pass_fds,
            )
        finally:
            if out is not None:
                out.close()
        watchdog.hold(self.proc.pid, last=self.stops_last)
        self._terminating = False
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until `ready_url` answers 2xx; raise if the process dies or the timeout passes."""
        if self.ready_url is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with code {self.proc and self.proc.returncode}")
            if http_ok(self.ready_url, timeout=1.0):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready at {self.ready_url} after {timeout:.0f} s")

    def signal(self, signum: int) -> None:
        """Send `signum` to the whole process group (the process and every child it started)."""
        if self.proc is None:
            return
        self._terminating = self._terminating or signum == signal.SIGTERM
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the whole process group, SIGKILL whatever is left of it after `grace` seconds.

        Waits for the group, not only for its leader: a leader that exits before its children (uvicorn's
        or RQ's worker processes) must not leave them behind.
        """
        if self.proc is None:
            return
        pgid = self.proc.pid
        if not self._terminating:
            self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_alive(pgid):
            self.signal(signal.SIGKILL)
        self.proc.wait()
        tether().release(pgid)
