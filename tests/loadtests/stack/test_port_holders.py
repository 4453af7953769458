"""Who holds a port: a part whose supervisor is gone, or a process that is no ragload part."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from loadtests.stack.port_holders import busy_ports_message, ragload_role
from loadtests.stack.services import READY_TIMEOUT_S, free_port, http_ok, ragload_command
from tests.loadtests.stack.stack_helpers import wait_gone

# Starts a mock in a session of its own and exits at once, with no tether: the mock is orphaned, as the parts
# of a stack are when their supervisor and its watchdog are both gone (or an older ragload left them).
ORPHANING_LAUNCHER = """
import subprocess, sys
argv = sys.argv[1:]
proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(proc.pid)
"""


def test_a_part_whose_supervisor_is_gone_is_named_with_the_command_that_stops_it() -> None:
    port = free_port()
    argv = ragload_command("mock", "--host", "127.0.0.1", "--port", str(port))
    launched = subprocess.run(
        [sys.executable, "-c", ORPHANING_LAUNCHER, *argv], capture_output=True, text=True, check=True
    )
    orphan = int(launched.stdout)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not http_ok(f"http://127.0.0.1:{port}/v1/models") and time.monotonic() < deadline:
            time.sleep(0.05)
        message = busy_ports_message({"--mock-port": port}, "127.0.0.1")
        named = f"`ragload mock --host 127.0.0.1 --port {port}` (pid {orphan})"
        assert f"{port}: {named}, not under a ragload supervisor" in message, message
        stop = re.search(r"Stop them with `kill ([\d ]+)`", message)
        assert stop and str(orphan) in stop[1].split(), message
        assert "--mock-port" in message.splitlines()[-1]
    finally:
        os.killpg(orphan, signal.SIGTERM)
        wait_gone([orphan], READY_TIMEOUT_S)


def test_a_port_held_by_a_process_that_is_no_ragload_part_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = busy_ports_message({"--api-port": port}, "127.0.0.1")
    assert f"{port}: `" in message and f"(pid {os.getpid()}), not a ragload part" in message, message
    assert "kill" not in message


def test_ragload_commands_are_recognised_however_they_were_started() -> None:
    assert ragload_role(["/venv/bin/python", "-m", "loadtests.cli", "api", "--port", "1"]) == "api"
    assert ragload_role(["/venv/bin/python", "/venv/bin/ragload", "up"]) == "up"
    assert ragload_role(["/venv/bin/ragload", "worker", "--count", "1"]) == "worker"
    assert ragload_role(["/usr/bin/python3", "-m", "pytest"]) is None
