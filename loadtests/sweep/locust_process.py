"""Run Locust headless for one cell in processes of its own (the sweep must never import Locust).

One process by default; with `generator_processes > 1`, a master and that many workers (distributed
Locust), for loads past one core. The cell is described to the scenarios by RAGLOAD_* environment variables
(loadtests/locust/user_support.py); the shape is loadtests/locust/locust_shapes.py.

With a `go_file`, the processes start at once but hold the load until `go()` creates that file: the sweep
starts Locust (a second or more of imports) while it prepares the stack for the trial, instead of after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.stack.services import free_port
from loadtests.stack.tether import tether
from loadtests.sweep.profile import Cell

LOCUST_FILES = Path(__file__).parent.parent / "locust"
SCENARIO_FILES = {"queued": "queued_chat_user.py", "sync": "sync_chat_user.py"}
STOP_MARGIN_S = 3.0  # after the shape ends, requests in flight get the deadline plus this to finish
EXIT_MARGIN_S = 60.0  # beyond warm-up + duration + stop timeout: the process is stuck, kill it
LOCUST_OK_EXIT_CODES = (0, 1)  # 1 = some requests failed, which a saturating cell expects


class LocustError(RuntimeError):
    """Locust did not run the cell; the message points at its log."""


@dataclass
class LocustRun:
    cell: Cell
    host: str
    samples_dir: Path
    log_path: Path
    generator_processes: int = 1
    seed: int = 0
    probe_interval_s: float = 0.5
    top_k: int = 4
    go_file: Path | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = 0.0

    @property
    def run_s(self) -> float:
        return self.cell.warmup_s + self.cell.duration_s

    @property
    def stop_timeout_s(self) -> float:
        return self.cell.deadline_s + STOP_MARGIN_S

    def environment(self) -> dict[str, str]:
        cell = self.cell
        env = {
            "RAGLOAD_SAMPLES_DIR": str(self.samples_dir),
            "RAGLOAD_ARCHITECTURE": cell.architecture,
            "RAGLOAD_DEADLINE_S": str(cell.deadline_s),
            "RAGLOAD_LOAD": cell.load,
            "RAGLOAD_USERS": str(cell.users or 0),
            "RAGLOAD_DURATION_S": str(self.run_s),
            "RAGLOAD_SEED": str(self.seed),
            "RAGLOAD_PROBE_INTERVAL_S": str(self.probe_interval_s),
            "RAGLOAD_TOP_K": str(self.top_k),
            "RAGLOAD_GENERATOR_PROCESSES": str(self.generator_processes),
        }
        if self.go_file is not None:
            env["RAGLOAD_GO_FILE"] = str(self.go_file)
        if cell.rate is not None:
            env["RAGLOAD_RATE"] = str(cell.rate)
        if cell.architecture == "queued":
            env["RAGLOAD_QUEUED_MODE"] = cell.mode
            env["RAGLOAD_POLL_INTERVAL_S"] = str(cell.poll_interval_s or 0.25)
        else:
            env["RAGLOAD_SYNC_MODE"] = cell.mode
        return {**os.environ, **env}

    def files(self) -> str:
        names = [SCENARIO_FILES[self.cell.architecture], "probe_user.py", "locust_shapes.py"]
        return ",".join(str(LOCUST_FILES / name) for name in names)

    def _common(self) -> list[str]:
        return [sys.executable, "-m", "locust", "-f", self.files(), "--loglevel", "WARNING"]

    def argv(self) -> list[list[str]]:
        """The command lines: [single] or [master, worker…]."""
        headless = ["--headless", "--host", self.host, "--stop-timeout", f"{self.stop_timeout_s:g}"]
        headless += ["--only-summary"]
        if self.generator_processes <= 1:
            return [[*self._common(), *headless]]
        port = free_port()
        master = [
            *self._common(),
            *headless,
            "--master",
            "--master-bind-host=127.0.0.1",
            f"--master-bind-port={port}",
            f"--expect-workers={self.generator_processes}",
        ]
        worker = [*self._common(), "--worker", "--master-host=127.0.0.1", f"--master-port={port}"]
        return [master, *([worker] * self.generator_processes)]

    def start(self) -> LocustRun:
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        log = self.log_path.open("ab")
        self.started = time.time()
        try:
            for argv in self.argv():
                self.procs.append(
                    subprocess.Popen(
                        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
                tether().hold(self.procs[-1].pid)  # a killed sweep must not leave Locust running
        finally:
            log.close()  # each child holds its own copy
        return self

    def go(self) -> None:
        """Release the load of processes started with a `go_file` (the cell's time starts now)."""
        if self.go_file is not None:
            self.go_file.touch()
        self.started = time.time()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def wait(self) -> None:
        """Until every Locust process has exited; kills them and raises if they overrun or fail."""
        limit = self.started + self.run_s + self.stop_timeout_s + EXIT_MARGIN_S
        for proc in self.procs:
            try:
                code = proc.wait(timeout=max(1.0, limit - time.time()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise LocustError(
                    f"Locust overran the cell by {EXIT_MARGIN_S:.0f} s; see {self.log_path}"
                ) from None
            tether().release(proc.pid)
            if code not in LOCUST_OK_EXIT_CODES:
                self.kill()
                raise LocustError(f"Locust exited with code {code}; see {self.log_path}")

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            tether().release(proc.pid)
