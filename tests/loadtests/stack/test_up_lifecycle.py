"""`ragload up` around its own life: killed outright, started on ports an earlier one holds, started on the
backlog an earlier run left in Valkey's append-only file. Real processes, free ports, data in tmp_path."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import termios
import time
import urllib.error
from pathlib import Path
from typing import Any

import psutil
import redis
from rq import Queue

from loadtests.stack.port_holders import ragload_role
from loadtests.stack.services import free_port, port_in_use, ragload_command
from loadtests.stack.tether import STOP_GRACE_S
from tests.loadtests.stack.stack_helpers import (
    QUESTION,
    UP_READY_TIMEOUT_S,
    UpProcess,
    alive,
    post_json,
    wait_gone,
    write_docs,
)

# The watchdog's two waves (parts, then the broker) at their longest, and a slow machine's slack on top.
# Without the tether the parts never go: this bound only rules that out.
GONE_BOUND_S = 2 * STOP_GRACE_S + 30.0
STOP_BOUND_S = 60.0  # an orderly stop of an idle stack (SIGTERM), a failure bound only
VALKEY_URL = re.compile(r"Valkey +(redis://127\.0\.0\.1:(\d+)/0)")


def ports() -> dict[str, int]:
    return {"--api-port": free_port(), "--mock-port": free_port(), "--baseline-port": free_port()}


def flags(ports: dict[str, int]) -> list[str]:
    return [item for flag, port in ports.items() for item in (flag, str(port))]


def role(pid: int) -> str:
    """What a process of the stack is: a ragload sub-command, the broker or the watchdog."""
    process = psutil.Process(pid)
    if "loadtests.stack.tether" in process.cmdline():
        return "watchdog"
    if process.name() == "valkey-server":
        return "valkey"
    return ragload_role(process.cmdline()) or " ".join(process.cmdline())


def test_a_killed_ragload_up_takes_every_part_with_it_and_a_second_one_names_it(tmp_path: Path) -> None:
    env = {"RAGLOAD_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": "", "OPENAI_BASE_URL": ""}
    wanted = ports()
    corpus = ["--corpus", str(write_docs(tmp_path / "docs"))]
    common = [*flags(wanted), "--workers", "2", "--baseline-processes", "2", *corpus]
    first = UpProcess([*common, "--log-dir", str(tmp_path / "logs")], env)
    stack: list[int] = []
    try:
        first.wait_for("ragload stack is up", UP_READY_TIMEOUT_S)
        first.wait_for("Valkey", 5)
        found = VALKEY_URL.search(first.output[-1])
        assert found, first.output[-1]
        valkey_port = int(found[2])
        stack = first.descendants()
        parts = [child.pid for child in psutil.Process(first.proc.pid).children()]
        assert {role(pid) for pid in parts} == {"api", "worker", "baseline", "mock", "valkey", "watchdog"}
        grandchildren = set(stack) - set(parts)
        assert len(grandchildren) >= 4, grandchildren  # two uvicorn processes, two RQ pool workers, …

        second = UpProcess([*common, "--log-dir", str(tmp_path / "logs-2")], env)
        assert second.proc.wait(timeout=UP_READY_TIMEOUT_S) == 1
        said = second.finish(STOP_BOUND_S)
        owner = rf"of `ragload up --api-port [^`]*` \(pid {first.proc.pid}\)"
        for flag, port in wanted.items():
            assert f"{port} ({flag})" in said
            part = rf"`ragload \w+ [^`]*--port {port}\b[^`]*` \(pid \d+\)"
            assert re.search(rf"  {port}: {part} {owner}", said), said
        assert f"`kill {first.proc.pid}`" in said, said

        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        took = wait_gone(stack, GONE_BOUND_S)
        print(f"kill -9 of ragload up -> its {len(stack)} processes gone in {took:.2f} s")
        assert not any(port_in_use(port) for port in [*wanted.values(), valkey_port])
        assert "is gone; stopping the 6 part(s) it left" in first.finish(STOP_BOUND_S)
        # An orderly stop (SIGTERM), not a kill: Valkey shut down cleanly, its AOF fsynced.
        assert "User requested shutdown" in (tmp_path / "logs" / "valkey.log").read_text()
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
        for pid in alive(stack):
            psutil.Process(pid).kill()


def submit(api: str) -> int:
    """The status the queued API answers a question with."""
    try:
        post_json(f"{api}/chat", {"query": QUESTION})
    except urllib.error.HTTPError as exc:
        return exc.code
    return 202


def test_a_backlog_from_an_earlier_run_is_reported_and_fresh_starts_empty(
    tmp_path: Path, mock_server: Any
) -> None:
    # No workers: what is submitted stays queued, as a load test's backlog does when its stack stops.
    env = {
        "RAGLOAD_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "",
        "OPENAI_BASE_URL": mock_server.base_url,
        "MAX_QUEUE_DEPTH": "3",
    }
    api_port = free_port()
    args = ["--api-port", str(api_port), "--workers", "0", "--no-baseline"]
    args += ["--corpus", str(write_docs(tmp_path / "docs"))]
    api = f"http://127.0.0.1:{api_port}"

    def run(*extra: str, expect: str) -> tuple[UpProcess, str]:
        up = UpProcess([*args, *extra, "--log-dir", str(tmp_path / f"logs-{time.monotonic_ns()}")], env)
        up.wait_for("ragload stack is up", UP_READY_TIMEOUT_S)
        up.wait_for("logs ", 5)
        banner = "".join(up.output)
        assert expect in banner, banner
        return up, banner

    def stop(up: UpProcess, signum: int = signal.SIGTERM) -> None:
        up.proc.send_signal(signum)
        assert up.proc.wait(timeout=STOP_BOUND_S) == 0
        assert "ragload: the supervisor" not in up.finish(STOP_BOUND_S)  # it stopped its parts itself

    up, banner = run(expect="Valkey")
    try:
        assert "from before" not in banner  # a first start: nothing to say
        assert [submit(api) for _ in range(4)] == [202, 202, 202, 429]
    finally:
        stop(up)

    up, banner = run(expect="  from before   3 job(s): 3 queued, 0 scheduled for a retry, 0 interrupted")
    try:
        assert "3 queued is at least MAX_QUEUE_DEPTH (3): every new submit gets 429" in banner
        assert "`ragload up --fresh`" in banner
        assert submit(api) == 429  # what the banner said
    finally:
        stop(up, signal.SIGHUP)  # its terminal closed: the same orderly stop, the queue kept

    up, banner = run("--fresh", expect="  from before   started empty (--fresh): deleted 3 job(s): 3 queued")
    try:
        found = VALKEY_URL.search(banner)
        assert found, banner
        with redis.Redis.from_url(found[1]) as connection:
            assert Queue("ragload", connection=connection).count == 0
        assert submit(api) == 202
    finally:
        stop(up)


def test_closing_the_terminal_of_ragload_up_stops_it_in_order(tmp_path: Path) -> None:
    """A real terminal hang-up: `ragload up` runs on a pseudo-terminal it controls, whose master is closed."""
    env = {**os.environ, "RAGLOAD_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": "", "OPENAI_BASE_URL": ""}
    args = [*flags({"--api-port": free_port(), "--mock-port": free_port()}), "--workers", "1"]
    args += ["--no-baseline"]
    args += ["--corpus", str(write_docs(tmp_path / "docs")), "--log-dir", str(tmp_path / "logs")]
    master, terminal = pty.openpty()

    def take_the_terminal() -> None:  # runs after setsid (start_new_session): the pty becomes its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    up = subprocess.Popen(
        ragload_command("up", *args),
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(terminal)
    stack: list[int] = []
    try:
        shown = b""
        deadline = time.monotonic() + UP_READY_TIMEOUT_S
        while b"ragload stack is up" not in shown:
            assert time.monotonic() < deadline and up.poll() is None, shown.decode(errors="replace")
            if select.select([master], [], [], 0.2)[0]:
                shown += os.read(master, 65536)
        stack = [child.pid for child in psutil.Process(up.pid).children(recursive=True)]
        parts = [pid for pid in stack if role(pid) != "watchdog"]  # the watchdog leaves once `up` has gone
        os.close(master)  # the terminal window is closed: the kernel hangs up its session (SIGHUP)
        master = -1
        # It exits by itself, its parts stopped (not killed by SIGHUP, -1, leaving them to the watchdog).
        code = up.wait(timeout=STOP_BOUND_S)
        print(f"ragload up after its terminal closed: exit code {code}")
        assert code == 0, code
        assert not alive(parts)  # gone before it exited: stopped by the supervisor itself
        wait_gone(stack, STOP_BOUND_S)
        assert "User requested shutdown" in (tmp_path / "logs" / "valkey.log").read_text()
    finally:
        if master >= 0:
            os.close(master)
        if up.poll() is None:
            up.kill()
        for pid in alive(stack):
            psutil.Process(pid).kill()
