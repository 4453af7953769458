"""Who holds the ports a stack wants: an earlier ragload stack (with the command that stops it) or a stranger.

`ragload up` refuses ports that are taken. When they are taken by the parts of another ragload stack, the
message names them, the supervisor that runs them if it is still alive (`kill` it: it stops every part in
order) or, if that supervisor is gone, every part of the stack it left (`kill` them: SIGTERM, so workers still
finish their job). A part is a process group leader (services.ManagedProcess), so a listener found by psutil
is traced to its part through its process group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil

PART_ROLES = ("api", "worker", "baseline", "mock")  # sub-commands that run as parts of a stack
BROKER_NAME = "valkey-server"
LABEL_CHARS = 100  # a command line is cut to this length in the message


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    label: str  # "ragload api --port 8000 …", "valkey-server 127.0.0.1:6379" or the command line
    role: str | None  # the ragload sub-command, or "valkey" for the broker

    @property
    def named(self) -> str:
        return f"`{self.label}` (pid {self.pid})"


def ragload_args(cmdline: Sequence[str]) -> list[str] | None:
    """The arguments of a `ragload …` or `python -m loadtests.cli …` command line, else None."""
    for i, arg in enumerate(cmdline[:3]):
        if arg == "loadtests.cli" or os.path.basename(arg) == "ragload":
            return list(cmdline[i + 1 :])
    return None


def ragload_role(cmdline: Sequence[str]) -> str | None:
    """The sub-command of a `ragload …` or `python -m loadtests.cli …` command line, else None."""
    args = ragload_args(cmdline)
    return None if args is None else (args[0] if args else "")


def shorten(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def describe(process: psutil.Process) -> Proc:
    try:
        cmdline, name, ppid = process.cmdline(), process.name(), process.ppid()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return Proc(process.pid, 0, "(unknown)", None)
    args = ragload_args(cmdline)
    if args is not None:
        return Proc(process.pid, ppid, shorten(" ".join(["ragload", *args])), ragload_role(cmdline))
    if name == BROKER_NAME:  # valkey-server shows "valkey-server HOST:PORT" as its command line
        address = " ".join(cmdline).partition(" ")[2]
        return Proc(process.pid, ppid, f"{BROKER_NAME} {address}".strip(), "valkey")
    return Proc(process.pid, ppid, shorten(" ".join(cmdline) or name), None)


def listeners(ports: Sequence[int]) -> dict[int, set[int]]:
    """Port -> pids listening on it (TCP, any address); a pid psutil may not see is left out."""
    found: dict[int, set[int]] = {port: set() for port in ports}
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return found
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in found and conn.pid:
            found[conn.laddr.port].add(conn.pid)
    return found


def part_of(pid: int) -> Proc | None:
    """The ragload part `pid` belongs to (its process group leader), else the process `pid` itself."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return None
    for candidate in (pgid, pid):
        try:
            proc = describe(psutil.Process(candidate))
        except psutil.NoSuchProcess:
            continue
        if proc.role is not None or candidate == pid:
            return proc
    return None


def stack_parts(parent_pid: int) -> list[Proc]:
    """The ragload parts (and brokers) whose parent is `parent_pid`: a stack whose supervisor is gone."""
    parts = []
    for process in psutil.process_iter():
        try:
            if process.ppid() != parent_pid or os.getpgid(process.pid) != process.pid:
                continue
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
        proc = describe(process)
        if proc.role in (*PART_ROLES, "valkey"):
            parts.append(proc)
    return sorted(parts, key=lambda proc: proc.pid)


def parent_of(part: Proc) -> Proc | None:
    try:
        return describe(psutil.Process(part.ppid))
    except psutil.NoSuchProcess:
        return None


def busy_ports_message(busy: Mapping[str, int], host: str) -> str:
    """Why the ports in `busy` (flag -> port) are taken, and by whom, with what to do about it."""
    held = listeners(list(busy.values()))
    wanted = ", ".join(f"{port} ({flag})" for flag, port in busy.items())
    lines = [f"port(s) already in use on {host}: {wanted}"]
    supervisors: dict[int, Proc] = {}
    unsupervised: dict[int, Proc] = {}  # parts not under a ragload command, by pid
    for port in busy.values():
        parts = {part.pid: part for pid in held[port] if (part := part_of(pid)) is not None}
        if not parts:
            lines.append(f"  {port}: held by a process this user cannot see")
        for part in parts.values():
            parent = parent_of(part)
            where = f"  {port}: {part.named}"
            if part.role not in (*PART_ROLES, "valkey"):
                lines.append(f"{where}, not a ragload part")
            elif parent is not None and parent.role is not None:
                supervisors[parent.pid] = parent
                lines.append(f"{where} of {parent.named}")
            else:
                unsupervised.update({proc.pid: proc for proc in stack_parts(part.ppid)} or {part.pid: part})
                owner = parent.named if parent else f"pid {part.ppid}"
                lines.append(f"{where}, not under a ragload supervisor (its parent: {owner})")
    if supervisors:
        pids = " ".join(map(str, supervisors))
        lines.append(f"Stop that stack with Ctrl-C in its terminal or `kill {pids}` (it stops every part).")
    if unsupervised:
        lines.append("Parts of a ragload stack whose supervisor is gone (or was never ragload):")
        lines += [f"  {proc.named}" for proc in unsupervised.values()]
        pids = " ".join(map(str, unsupervised))
        lines.append(f"Stop them with `kill {pids}` (SIGTERM: workers finish their job first).")
    lines.append("Or choose other ports (" + ", ".join(busy) + ").")
    return "\n".join(lines)
