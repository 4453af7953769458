"""What the tests of the embedded stack and of `ragload up` share: a small corpus, HTTP calls, `ragload up`
as a subprocess whose output is read line by line, and a check that processes are gone."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import psutil

from loadtests.stack.services import ragload_command

DOCS = {
    "queues.md": "# Job queues\n\nA job queue decouples accepting a request from doing the work.\n",
    "latency.md": "# Tail latency\n\nThe 99th percentile latency is the time 99 % of requests stay under.\n",
}
QUESTION = "What does a job queue decouple?"
UP_READY_TIMEOUT_S = 60.0  # a cold start on a busy 2-core machine: imports, ingest, index load


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def post_json(url: str, body: dict[str, Any], timeout: float = 15) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def get_json(url: str, timeout: float = 15) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` still running (a zombie, dead but not yet reaped, does not count)."""
    return [pid for pid in pids if running(pid)]


def describe(pids: list[int]) -> dict[int, str]:
    """Pid -> command line, for a failure message."""
    found = {}
    for pid in pids:
        try:
            found[pid] = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            found[pid] = "(gone)"
    return found


def wait_gone(pids: list[int], timeout: float) -> float:
    """Seconds until none of `pids` runs; raises AssertionError naming the survivors after `timeout`."""
    started = time.monotonic()
    while alive(pids):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"still running after {timeout:.0f} s: {describe(alive(pids))}")
        time.sleep(0.02)
    return time.monotonic() - started


class UpProcess:
    """`ragload up` as a user runs it, its output read line by line in a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ragload_command("up", *args),
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not printed; output so far:\n{''.join(self.output)}")

    def finish(self, timeout: float) -> str:
        """Wait for the process to exit; its whole output (what `wait_for` read included)."""
        self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the reader may still hold the last lines
            try:
                self.output.append(self.lines.get(timeout=0.5))
            except queue.Empty:
                break
        return "".join(self.output)

    def descendants(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.proc.pid).children(recursive=True)]
