"""The fault actions of a scenario on its timeline: worker kills, LLM error windows and outages, a broker
restart; plus the supervisor that respawns dead workers, and the log of everything done (events.csv).

`plan()` turns a scenario's events into timed actions; `EventPlayer` (a thread) applies them at their time
through a `FaultTarget` (the embedded stack and the mock's live config: `StackFaults`) until the load ends,
then `finish()` closes whatever is still open (errors off, the broker back up), so the drain runs clean.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from loadtests.faults.kills import KillWatch
from loadtests.faults.profile import BrokerRestart, KillWorker, LlmErrors, LlmOutage, Scenario
from loadtests.stack.embedded_stack import EmbeddedStack
from loadtests.stack.services import ManagedProcess

PLAN_HORIZON_S = 3600.0  # periodic events with no end are planned this far; the player stops at load end
RESPAWN_INTERVAL_S = 0.5  # as `ragload up`'s supervisor loop
HTTP_TIMEOUT_S = 5.0
OUTAGE_ERROR_RATE = 1.0  # every LLM call answered 500/503: the upstream is down


@dataclass(frozen=True)
class LoggedEvent:
    t: float
    kind: str
    detail: str


class EventLog:
    """What the runner did, with `t` in seconds since the scenario started (thread-safe)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self._rows: list[LoggedEvent] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.started

    def add(self, kind: str, detail: str = "", t: float | None = None) -> LoggedEvent:
        """`t`: when it happened, if that was before now (the rows stay in time order)."""
        event = LoggedEvent(round(self.now() if t is None else t, 3), kind, detail)
        with self._lock:
            self._rows.append(event)
            self._rows.sort(key=lambda row: row.t)  # stable; almost always already in order
        return event

    def note(self, kind: str, detail: str = "") -> None:
        """`add` for callbacks that must return None."""
        self.add(kind, detail)

    def rows(self) -> list[LoggedEvent]:
        with self._lock:
            return list(self._rows)

    def first(self, kind: str) -> LoggedEvent | None:
        return next((row for row in self.rows() if row.kind == kind), None)


class FaultTarget(Protocol):
    def kill_worker(self) -> str | None: ...  # a description of the killed worker; None if none was alive
    def set_llm_error_rate(self, rate: float) -> None: ...
    def stop_broker(self) -> None: ...
    def kill_broker(self) -> None: ...
    def restart_broker(self) -> None: ...


def put_mock_config(mock_url: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{mock_url}/_mock/config",
        data=json.dumps(dict(changes)).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return dict(json.load(response))


class StackFaults:
    """Faults applied to an EmbeddedStack and its mock; `watch` follows the jobs of killed workers."""

    def __init__(self, stack: EmbeddedStack, rng: random.Random, watch: KillWatch | None = None) -> None:
        self.stack = stack
        self.rng = rng
        self.watch = watch

    def kill_worker(self) -> str | None:
        victim = self.stack.kill_worker(self.rng, on_kill=self._note_kill)
        return f"{victim.name} pid {victim.pid}" if victim else None

    def _note_kill(self, victim: ManagedProcess, pids: list[int]) -> None:
        if self.watch is not None:
            self.watch.killed(victim.name, pids)

    def set_llm_error_rate(self, rate: float) -> None:
        put_mock_config(self.stack.urls["mock"], {"error_rate": rate})

    def stop_broker(self) -> None:
        self.stack.stop_broker()

    def kill_broker(self) -> None:
        self.stack.kill_broker()

    def restart_broker(self) -> None:
        self.stack.restart_broker()


@dataclass(frozen=True, order=True)
class Action:
    t: float
    kind: str  # kill_worker | llm_errors_on | llm_errors_off | llm_outage_on | llm_outage_off | broker_*
    value: float = 0.0  # the error rate of llm_errors_on


def plan(scenario: Scenario, horizon_s: float = PLAN_HORIZON_S) -> list[Action]:
    actions: list[Action] = []
    for event in scenario.events:
        if isinstance(event, KillWorker):
            end = event.to_s if event.to_s is not None else horizon_s
            k = 1
            while (t := event.from_s + k * event.every_s) <= end:
                actions.append(Action(t, "kill_worker"))
                k += 1
        elif isinstance(event, LlmErrors):
            actions.append(Action(event.from_s, "llm_errors_on", event.rate))
            if event.to_s is not None:
                actions.append(Action(event.to_s, "llm_errors_off"))
        elif isinstance(event, LlmOutage):
            actions += [Action(event.from_s, "llm_outage_on"), Action(event.to_s, "llm_outage_off")]
        elif isinstance(event, BrokerRestart):
            actions += [
                Action(event.at_s, "broker_stop" if event.signal == "SIGTERM" else "broker_kill"),
                Action(event.at_s + event.down_s, "broker_start"),
            ]
    return sorted(actions)


class EventPlayer:
    """Applies the planned actions at their times (a thread) until `finish()`."""

    def __init__(self, target: FaultTarget, actions: list[Action], log: EventLog) -> None:
        self.target = target
        self.actions = actions
        self.log = log
        self.error_rate = 0.0  # of an llm_errors window
        self.outage = False
        self.broker_down = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-events", daemon=True)
        self.failures: list[str] = []

    def start(self) -> EventPlayer:
        self._thread.start()
        return self

    def finish(self) -> None:
        """Stop playing; end an open error window or outage and bring a stopped broker back."""
        self._stop.set()
        self._thread.join()
        if self.outage:
            self._apply(Action(self.log.now(), "llm_outage_off"))
        if self.error_rate:
            self._apply(Action(self.log.now(), "llm_errors_off"))
        if self.broker_down:
            self._apply(Action(self.log.now(), "broker_start"))

    def _run(self) -> None:
        for action in self.actions:
            if self._stop.wait(max(0.0, action.t - self.log.now())):
                return
            try:
                self._apply(action)
            except (OSError, RuntimeError) as exc:  # a failed action is reported, the run goes on
                self.failures.append(f"{action.kind} at {action.t:g} s: {exc}")
                self.log.add(action.kind, f"FAILED: {exc}")

    def _apply(self, action: Action) -> None:
        kind = action.kind
        if kind == "kill_worker":
            t = self.log.now()  # the supervisor may log the respawn before this call returns
            killed = self.target.kill_worker()
            self.log.add(kind, killed or "no live worker to kill", t=t)
        elif kind in ("llm_errors_on", "llm_errors_off"):
            self.error_rate = action.value if kind == "llm_errors_on" else 0.0
            self._push_error_rate()
            self.log.add(kind, f"error_rate {self.error_rate:g}")
        elif kind in ("llm_outage_on", "llm_outage_off"):
            self.outage = kind == "llm_outage_on"
            self._push_error_rate()
            self.log.add(kind, f"error_rate {self._effective_rate():g}")
        elif kind == "broker_stop":
            self.broker_down = True
            self.log.add(kind, "SIGTERM valkey")
            self.target.stop_broker()
        elif kind == "broker_kill":  # logged as a broker_stop: the broker is down either way
            self.broker_down = True
            self.log.add("broker_stop", "SIGKILL valkey")
            self.target.kill_broker()
        elif kind == "broker_start":
            self.target.restart_broker()
            self.broker_down = False
            self.log.add(kind, "valkey answering again (same port and data folder)")

    def _effective_rate(self) -> float:
        return OUTAGE_ERROR_RATE if self.outage else self.error_rate

    def _push_error_rate(self) -> None:
        self.target.set_llm_error_rate(self._effective_rate())


class WorkerSupervisor:
    """What `ragload up`'s supervisor does: every 0.5 s replace the workers that died (not while the
    broker is down: a new worker exits at once if it cannot reach it)."""

    def __init__(self, stack: EmbeddedStack, log: EventLog, may_respawn: Callable[[], bool]) -> None:
        self.stack = stack
        self.log = log
        self.may_respawn = may_respawn
        self.respawned = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(RESPAWN_INTERVAL_S):
            if not self.may_respawn():
                continue
            before = {id(w) for w in self.stack.worker_processes()}
            dead_ones = self.stack.respawn_dead_workers()
            fresh = [w.name for w in self.stack.worker_processes() if id(w) not in before]
            for dead, new_name in zip(dead_ones, fresh + ["?"] * len(dead_ones), strict=False):
                code = dead.proc.returncode if dead.proc else None
                self.respawned += 1
                self.log.add("respawn_worker", f"{new_name} replaces {dead.name} (exit code {code})")
