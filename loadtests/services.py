"""Start, wait for and stop the processes of the stack (mock, API, workers, baseline).

Shared by the `ragload up` supervisor, the sweep runner and the test fixtures, so that every one of
them starts a service the same way and never leaves an orphan behind.
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
from collections.abc import Mapping, Sequence
from pathlib import Path

READY_TIMEOUT_S = 60.0  # a cold start imports FastAPI, the openai SDK and loads the index
STOP_GRACE_S = 10.0  # a worker finishing its job gets this long before SIGKILL


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (never a well-known one like 6379 by surprise)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
    """A child process in its own process group, so that stopping it stops its children too."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        ready_url: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ManagedProcess:
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
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

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the whole process group, SIGKILL whatever is left after `grace` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
