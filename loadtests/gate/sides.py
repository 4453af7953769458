"""One side of the gate (A = the base, B = the change) measured once: its micro-benchmarks, then its cells.

Each measurement runs in fresh processes of the side's own code (`PYTHONPATH` = its tree, its own working
directory): `pytest benchmarks` twice — our code's hot paths in CPU seconds of the benchmark process
(`micro-cpu.json`: immune to what else the machine runs), the mock server's from outside in wall time
(`micro-wall.json`: benchmarks with `mock` in their name) — then `ragload bench --profile <gate profile>`,
which writes a run folder.
Only these files cross from one revision to the other (reports/gate/measures.py reads them), so the base
needs no code of the change.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MICRO_MAX_TIME_S = 0.5  # pytest-benchmark's time per benchmark (default 1 s): rounds repeat it anyway
MICRO_MIN_ROUNDS = 15  # the fastest of at least this many, however slow the benchmark
STEP_TIMEOUT_S = 600.0  # a step that runs this long is stuck: fail the side, never hang CI
LOG_TAIL_LINES = 15
# The environment a developer's shell may carry that would point a side at someone else's services.
FOREIGN_SETTINGS = (
    "REDIS_URL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "CHAT_MODEL",
    "EMBED_MODEL",
    "EMBED_DIM",
    "QDRANT_URL",
    "QDRANT_COLLECTION",
    "QUEUE_NAME",
    "PROMETHEUS_MULTIPROC_DIR",
    "RAGLOAD_DATA_DIR",
    "PYTHONPATH",
)


@dataclass(frozen=True)
class Side:
    name: str  # "A" or "B"
    tree: Path
    python: Path
    data_dir: Path  # its own index and Valkey data: the two revisions may index differently

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
        return {**env, "PYTHONPATH": str(self.tree), "RAGLOAD_DATA_DIR": str(self.data_dir)}


class StepFailed(RuntimeError):
    """A step of a side failed; the message ends with the tail of its log."""


def _run(side: Side, command: list[str], log: Path) -> float:
    began = time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        try:
            done = subprocess.run(
                command,
                cwd=side.tree,
                env=side.env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=STEP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{' '.join(command[2:5])} ran over {STEP_TIMEOUT_S:.0f} s ({log})") from None
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
        raise StepFailed(f"exit {done.returncode} ({log}):\n" + "\n".join(tail))
    return time.monotonic() - began


def run_micro(side: Side, folder: Path) -> float:
    seconds = 0.0
    for clock, selection, timer in (("cpu", "not mock", "time.process_time"), ("wall", "mock", None)):
        command = [
            str(side.python), "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider", "-k", selection,
            "--benchmark-enable", f"--benchmark-json={folder / f'micro-{clock}.json'}",
            f"--benchmark-max-time={MICRO_MAX_TIME_S}", f"--benchmark-min-rounds={MICRO_MIN_ROUNDS}",
            "--benchmark-disable-gc", "--benchmark-columns=min,median,rounds",
            *([f"--benchmark-timer={timer}"] if timer else []),
        ]  # fmt: skip
        seconds += _run(side, command, folder / f"micro-{clock}.log")
    return seconds


def run_cells(side: Side, profile: Path, folder: Path) -> float:
    command = [
        str(side.python), "-m", "loadtests.cli", "bench", "--profile", str(profile),
        "--out", str(folder / "runs"), "--no-report", "--no-calibrate",
    ]  # fmt: skip
    return _run(side, command, folder / "bench.log")


def measure(side: Side, profile: Path, folder: Path) -> dict[str, Any]:
    """Both steps into `folder`; what gate.json records of it (`ok`, times, the error if any)."""
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"ok": False, "error": None}
    try:
        record["micro_s"] = round(run_micro(side, folder), 1)
        record["cells_s"] = round(run_cells(side, profile, folder), 1)
        record["ok"] = True
    except (StepFailed, OSError) as exc:
        record["error"] = str(exc)
    return record
