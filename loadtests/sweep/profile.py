"""Sweep profiles: TOML files (loadtests/profiles/*.toml) validated into a list of cells.

A profile has a `[run]` table (durations, deadline, seed, repeats, wall-time budget), a `[mock]` table (the
latency model the stack's mock serves) and `[[group]]` tables, each expanded into cells: one per worker
count × user count (closed loop) or × arrival rate (open loop). Every cell of a run shares one client
deadline.

Each cell runs `repeats` times (a group may set its own). Trial k of every cell at one load (closed: users;
open: arrival rate) gets the same seed, `load_seed(run seed, load, k)`, whatever its architecture, mode or
worker count: the same arrival times and the same sequence of requests, hence (the mock drawing each call's
latency from the seed and the request's content) the same upstream latency per request — common random
numbers, so that a difference between two cells at one load is the systems', not the luck of the draw.
`run_order` interleaves the trials: round k runs trial k of every cell, so that drift of a shared machine
spreads over every cell rather than over one side of a comparison.
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from hashlib import blake2b
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loadtests.sweep.upstream_capacity import UpstreamCurve, capacity_curve
from mocks.config import MockConfig
from mocks.latency import LatencySpec
from mocks.upstream import load_upstream

PROFILES_DIR = Path(__file__).parent.parent / "profiles"  # loadtests/profiles/: sweeps and faults
QUEUED_MODES = ("longpoll", "poll")
SYNC_MODES = ("threadpool", "blocking", "asyncio")
# Fixed costs of one cell besides warm-up and measurement: Locust start-up (~1.5 s of imports), the tail
# of requests in flight at the end, settling and worker scaling. Measured on 2 cores; used for estimates.
CELL_OVERHEAD_S = 5.0
STACK_START_S = 20.0  # Valkey, mock, API, workers and baseline ready (index already built)


class ProfileError(ValueError):
    """A profile that cannot be loaded; the message says which file and what is wrong."""


class RunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_s: float = Field(default=3.0, ge=0)
    duration_s: float = Field(default=10.0, gt=0)
    deadline_s: float = Field(default=30.0, gt=0, le=300)
    seed: int = 7
    repeats: int = Field(default=1, ge=1, le=100, description="trials of every cell, each with its own seed")
    probe_interval_s: float = Field(default=0.5, gt=0)
    top_k: int = Field(default=4, ge=1, le=20)
    max_wall_s: float | None = Field(default=None, gt=0, description="budget the estimate must fit in")


class MockSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_latency: str = "lognormal:300ms,0.25"
    embed_latency: str = "const:10ms"
    # An upstream profile for the mock (mocks/upstream.py): a preset ("vllm-like", "unbounded") or a TOML
    # file from `ragload probe-upstream`. Its keys apply first; chat_latency/embed_latency given here win.
    # A group may name another (`[[group]] upstream = ...`): it is put on the mock before the group's cells.
    upstream: str | None = None
    # What one RAG chat call sends and gets (the prompt with top-k passages, the mock's short answer): the
    # capacity curve of an upstream with a knee is computed for calls of this size.
    prompt_tokens: int = Field(default=150, ge=1)  # ≈ 149 measured in the mock's call log
    output_tokens: int = Field(default=14, ge=1)  # ≈ 14.3 measured

    @field_validator("chat_latency", "embed_latency")
    @classmethod
    def _parses(cls, value: str) -> str:
        LatencySpec.parse(value)  # raises ValueError with the reason
        return value

    @field_validator("upstream")
    @classmethod
    def _loads(cls, value: str | None) -> str | None:
        if value is not None:
            load_upstream(value)  # raises ConfigError (a ValueError) with the reason
        return value

    def _latencies_given(self) -> dict[str, str]:
        names = ("chat_latency", "embed_latency")
        return {key: str(getattr(self, key)) for key in names if key in self.model_fields_set}

    def live_config(self) -> dict[str, object]:
        """What to PUT on /_mock/config before a cell: the upstream's keys, then the latencies this profile
        sets (without an upstream: both latencies, as before)."""
        if self.upstream is None:
            return {"chat_latency": self.chat_latency, "embed_latency": self.embed_latency}
        return {**load_upstream(self.upstream), **self._latencies_given()}

    def for_upstream(self, upstream: str | None) -> MockSettings:
        """These settings with another upstream (None: this profile's own)."""
        return self if upstream is None else self.model_copy(update={"upstream": upstream})

    def mock_config(self) -> MockConfig:
        """The configuration the mock runs under these settings (its defaults, then the live config)."""
        return MockConfig().updated(self.live_config())

    def latency_specs(self) -> tuple[LatencySpec, LatencySpec]:
        """(chat, embeddings) as the mock serves them: the upstream's unless this profile sets them. Under a
        capacity model the chat spec is only the time before the engine."""
        config = self.mock_config()
        return config.chat_latency, config.embed_latency

    def curve(self) -> UpstreamCurve | None:
        """The capacity curve of this upstream (loadtests/sweep/upstream_capacity.py); None without a knee."""
        if self.upstream is None:
            return None
        live = self.live_config()
        return capacity_curve(
            self.upstream,
            tuple(sorted(live.items())),
            self.latency_specs()[1].mean,
            self.prompt_tokens,
            self.output_tokens,
        )

    @property
    def service_time_s(self) -> float:
        """Mean upstream time of one RAG request alone: one embeddings call plus one chat call (under a
        capacity model: the chat call's draw plus the engine's time for a call that has it to itself)."""
        curve = self.curve()
        if curve is not None:
            return curve.unloaded_s
        chat, embed = self.latency_specs()
        return chat.mean + embed.mean

    def service_time_numbers(self) -> dict[str, Any]:
        """Mean (s) and CV² of the configured upstream time, per call and per request (one embeddings call,
        then one chat call), for config.json's `service_time_model`: the report's queueing model reads these
        numbers, never a latency spec (reports/ imports nothing of the mock)."""
        chat, embed = self.latency_specs()
        curve = self.curve()
        # Under a capacity model a call alone adds the engine's (deterministic) time to its own draw.
        engine_s = curve.unloaded_s - chat.mean - embed.mean if curve is not None else 0.0
        engine_text = f" + {engine_s * 1000:.0f} ms engine alone" if curve is not None else ""
        moments = {
            "embeddings": (str(embed), embed.mean, embed.variance),
            "chat": (f"{chat}{engine_text}", chat.mean + engine_s, chat.variance),
        }
        mean = sum(m[1] for m in moments.values())
        variance = sum(m[2] for m in moments.values())
        return {
            "per_call": {name: _moments(*m) for name, m in moments.items()},
            "per_request": _moments(" + ".join(m[0] for m in moments.values()), mean, variance),
        }

    def args(self, seed: int) -> list[str]:
        if self.upstream is not None:
            given = self._latencies_given().items()
            flags = [part for key, value in given for part in ("--" + key.replace("_", "-"), value)]
            return ["--upstream", self.upstream, *flags, "--seed", str(seed)]
        return [
            "--chat-latency",
            self.chat_latency,
            "--embed-latency",
            self.embed_latency,
            "--seed",
            str(seed),
        ]


def _moments(model: str, mean_s: float, variance: float) -> dict[str, Any]:
    return {"model": model, "mean_s": mean_s, "cv2": variance / mean_s**2 if mean_s > 0 else 0.0}


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Literal["queued", "sync"]
    mode: str
    load: Literal["closed", "open"]
    workers: list[int] | None = None
    # queued groups: the queue engine (system/engines/); saq needs `concurrency`, its jobs per worker process
    engine: Literal["rq", "saq"] = "rq"
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    users: list[int] | None = None
    users_per_worker: float | None = Field(default=None, gt=0)
    rates: list[float] | None = None
    processes: int = Field(default=1, ge=1)
    threads: int | None = Field(default=None, ge=1)
    poll_interval_s: float = Field(default=0.25, gt=0)
    repeats: int | None = Field(default=None, ge=1, le=100, description="overrides [run] repeats")
    upstream: str | None = None  # the upstream its cells run against (default: the [mock] table's)
    duration_s: float | None = Field(default=None, gt=0, description="overrides [run] duration_s")
    burst: bool = False  # open loop for a short duration_s: the report reads it as a burst, not a steady load
    why: str = ""  # what the group's cells are for in the report (printed by --dry-run)

    @field_validator("upstream")
    @classmethod
    def _upstream_loads(cls, value: str | None) -> str | None:
        if value is not None:
            load_upstream(value)  # raises ConfigError (a ValueError) with the reason
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Group:
        queued = self.architecture == "queued"
        modes = QUEUED_MODES if queued else SYNC_MODES
        if self.mode not in modes:
            raise ValueError(
                f"mode '{self.mode}' is not a {self.architecture} mode (one of {', '.join(modes)})"
            )
        if queued and not self.workers:
            raise ValueError("a queued group needs `workers = [...]`")
        if not queued and self.workers:
            raise ValueError("`workers` is for queued groups; the baseline has processes/threads")
        if any(n < 1 for n in self.workers or []):
            raise ValueError("worker counts must be >= 1")
        if self.engine == "saq" and (not queued or self.concurrency is None):
            raise ValueError("engine = 'saq' is for queued groups and needs `concurrency` (jobs per process)")
        if self.engine == "rq" and self.concurrency is not None:
            raise ValueError("`concurrency` is for engine = 'saq' (an RQ worker runs one job at a time)")
        if self.load == "closed":
            if bool(self.users) == (self.users_per_worker is not None):
                raise ValueError("a closed-loop group needs exactly one of `users` or `users_per_worker`")
            if self.users_per_worker is not None and not queued:
                raise ValueError("`users_per_worker` is for queued groups")
            if self.rates:
                raise ValueError("`rates` is for open-loop groups")
            if any(n < 1 for n in self.users or []):
                raise ValueError("user counts must be >= 1")
        else:
            if not self.rates or any(r <= 0 for r in self.rates):
                raise ValueError("an open-loop group needs `rates = [...]`, each above 0")
            if self.users or self.users_per_worker:
                raise ValueError("open-loop groups take `rates`, not users (the user pool is sized for you)")
        if self.burst and (self.load != "open" or self.duration_s is None):
            raise ValueError("a burst is an open-loop group with its own (short) `duration_s`")
        return self


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    run: RunSettings = RunSettings()
    mock: MockSettings = MockSettings()
    group: list[Group] = Field(min_length=1)


@dataclass(frozen=True)
class Cell:
    """One trial of one cell: one architecture and configuration at one load, with the stack reset before it.

    `cell` names the configuration at its load (what the report aggregates over trials); `cell_id` names the
    trial (its folder in the run): `cell` itself when the cell runs once, else `cell` + `-trial<k>`.
    """

    index: int
    cell_id: str
    architecture: str
    mode: str
    load: str
    workers: int | None
    users: int | None  # closed: chat users; open: None (the pool size is in the cell's shape)
    rate: float | None
    duration_s: float
    warmup_s: float
    deadline_s: float
    service_time_ms: float | None  # None: the upstream's latency is unknown (--target without a mock)
    processes: int | None = None
    threads: int | None = None
    # baseline: requests served at once (None = upstream-bound, asyncio); queued saq: jobs per worker process
    concurrency: int | None = None
    engine: str = "rq"  # queued cells: the queue engine
    poll_interval_s: float | None = None
    overhead_ms: float = 0.0  # the job path's own time per request at zero upstream latency (shown, not in S)
    cell: str = ""
    trial: int = 1
    repeats: int = 1
    seed: int = 0  # load_seed: the same for every cell at this load in this trial
    why: str = ""  # the group's reason to be in the profile
    upstream: str = ""  # the upstream profile put on the mock before the cell ("": the mock's flags)
    # Requests per second the server side can serve at most: W / S, concurrency / S, or under a capacity
    # upstream its curve at W or concurrency; None: no server-side bound (asyncio) or unknown upstream.
    server_capacity_rps: float | None = None
    # Under a capacity upstream: the most this cell can get from it (its curve at the requests the cell can
    # have in flight, the knee's when nothing bounds them); None: no capacity model (the ideal is W / S).
    upstream_rps: float | None = None
    burst: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def baseline_key(self) -> tuple[str, int, int | None] | None:
        if self.architecture != "sync":
            return None
        return (self.mode, self.processes or 1, self.threads)

    @property
    def servers(self) -> int | None:
        """Requests the server side serves at once: queued, workers (× jobs per process on saq)."""
        if self.architecture == "queued":
            return (self.workers or 0) * (self.concurrency or 1)
        return self.concurrency


def baseline_concurrency(mode: str, processes: int, threads: int | None) -> int | None:
    """What the baseline's /readyz reports: blocking: processes; threadpool: processes × threads."""
    if mode == "blocking":
        return processes
    if mode == "threadpool":
        return processes * (threads or DEFAULT_BASELINE_THREADS)
    return None


DEFAULT_BASELINE_THREADS = 40  # the baseline's own default (AnyIO's thread limiter)


def _cell_id(index: int, group: Group, workers: int | None, users: int | None, rate: float | None) -> str:
    parts = [f"{index:02d}", group.architecture, group.mode, group.load]
    if workers is not None:
        parts.append(f"w{workers}" + (f"-saq-c{group.concurrency}" if group.engine == "saq" else ""))
    else:
        parts.append(f"p{group.processes}" + (f"t{group.threads}" if group.mode == "threadpool" else ""))
    parts.append(f"u{users}" if users is not None else f"r{rate:g}")
    return "-".join(parts)


def _loads(group: Group, workers: int | None) -> list[tuple[int | None, float | None]]:
    if group.load == "open":
        return [(None, rate) for rate in group.rates or []]
    if group.users_per_worker is not None:
        return [(math.ceil(group.users_per_worker * (workers or 1)), None)]
    return [(users, None) for users in group.users or []]


def load_seed(run_seed: int, load: str, value: float, trial: int) -> int:
    """The seed of trial `trial` at one load: a stable hash, so that adding or reordering cells in a profile
    changes no other cell's seed (`random` and Python's `hash()` are not stable across processes)."""
    digest = blake2b(f"{run_seed}|{load}|{value:g}|{trial}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


def _capacities(
    curve: UpstreamCurve | None, service_s: float, servers: int | None, users: int | None
) -> tuple[float | None, float | None]:
    """(server_capacity_rps, upstream_rps) of a cell with `servers` (None: unbounded) and closed-loop
    `users` (None: open loop)."""
    if curve is None:
        return (servers / service_s if servers and service_s > 0 else None), None
    in_flight = min(n for n in (servers, users) if n is not None) if (servers or users) else None
    return (curve.rps(servers) if servers else None), curve.rps(in_flight)


def expand(profile: Profile, repeats: int | None = None) -> list[Cell]:
    """Every trial of every cell, trials of one cell together (`run_order` sets the order they run in);
    `repeats` (`ragload bench --repeats N`) overrides the profile's for every group."""
    cells: list[Cell] = []
    index = 0
    for group in profile.group:
        worker_counts: list[int | None] = list(group.workers) if group.workers else [None]
        sync = group.architecture == "sync"
        trials = repeats or group.repeats or profile.run.repeats
        mock = profile.mock.for_upstream(group.upstream)
        service_s, curve = mock.service_time_s, mock.curve()
        # inline: requests the baseline serves at once; queued: jobs in flight per worker process (saq)
        concurrency = (
            baseline_concurrency(group.mode, group.processes, group.threads) if sync else group.concurrency
        )
        for workers in worker_counts:
            for users, rate in _loads(group, workers):
                index += 1
                name = _cell_id(index, group, workers, users, rate)
                load_value = float(users) if users is not None else float(rate or 0)
                servers = workers * (concurrency or 1) if workers else concurrency
                server_rps, upstream_rps = _capacities(curve, service_s, servers, users)
                cells.extend(
                    Cell(
                        index=index,
                        cell_id=name if trials == 1 else f"{name}-trial{trial}",
                        architecture=group.architecture,
                        mode=group.mode,
                        load=group.load,
                        workers=workers,
                        users=users,
                        rate=rate,
                        duration_s=group.duration_s or profile.run.duration_s,
                        warmup_s=0.0 if group.burst else profile.run.warmup_s,  # a burst starts cold
                        deadline_s=profile.run.deadline_s,
                        service_time_ms=round(service_s * 1000, 3),
                        processes=group.processes if sync else None,
                        threads=group.threads if sync else None,
                        concurrency=concurrency,
                        engine=group.engine,
                        poll_interval_s=group.poll_interval_s if group.mode == "poll" else None,
                        cell=name,
                        trial=trial,
                        repeats=trials,
                        seed=load_seed(profile.run.seed, group.load, load_value, trial),
                        why=group.why,
                        upstream=group.upstream or profile.mock.upstream or "",
                        server_capacity_rps=_round(server_rps),
                        upstream_rps=_round(upstream_rps),
                        burst=group.burst,
                    )
                    for trial in range(1, trials + 1)
                )
    return cells


def _stack_config(cell: Cell) -> tuple[str, str, int, int, str]:
    """What the stack must be switched to for a cell: its queue engine and worker count, or its baseline's
    configuration."""
    engine = cell.engine if cell.architecture == "queued" else ""
    concurrency = (cell.concurrency or 0) if engine == "saq" else 0
    return (cell.architecture, engine, concurrency, cell.workers or 0, str(cell.baseline_key))


def run_order(cells: Sequence[Cell], seed: int) -> list[Cell]:
    """Round k runs trial k of every cell, so that drift of a shared machine spreads over every cell (and
    the two sides of a comparison run close in time). Within a round, the cells of one stack configuration
    run together (each switch scales the workers or restarts the baseline) in a seeded shuffled order, and
    the configurations come in a serpentine: ascending (queued by worker count, then the baseline's) in odd
    rounds, descending in even ones, so a round starts where the previous one ended and the workers grow or
    shrink a step at a time."""
    ordered: list[Cell] = []
    for trial in sorted({c.trial for c in cells}):
        rng = random.Random(f"{seed}|order|{trial}")
        configs: dict[tuple[str, str, int, int, str], list[Cell]] = {}
        for cell in cells:
            if cell.trial == trial:
                configs.setdefault(_stack_config(cell), []).append(cell)
        for key in sorted(configs, reverse=len(ordered) > 0 and trial % 2 == 0):
            members = configs[key]
            rng.shuffle(members)
            ordered.extend(members)
    return ordered


def with_overhead(cells: Sequence[Cell], overhead_ms: dict[str, float]) -> list[Cell]:
    return [replace(c, overhead_ms=overhead_ms.get(c.architecture, 0.0)) for c in cells]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def overloaded(cell: Cell) -> bool:
    """Open loop past the server side's capacity (W/S, concurrency/S, or a capacity upstream's curve at
    either, or at its knee when nothing bounds the calls): requests are still in flight when the arrivals
    end, and the trial waits for them up to the deadline."""
    if cell.load != "open" or not cell.service_time_ms or cell.rate is None:
        return False
    capacity = cell.server_capacity_rps if cell.server_capacity_rps is not None else cell.upstream_rps
    if capacity is None:  # a cell made without capacities (tests): W/S (× C on saq) or concurrency/S
        servers = cell.servers
        capacity = servers / (cell.service_time_ms / 1000) if servers else None
    return capacity is not None and cell.rate > capacity


def estimated_wall_s(profile: Profile, cells: list[Cell] | None = None) -> float:
    cells = cells if cells is not None else expand(profile)
    per_cell = sum(
        c.warmup_s + c.duration_s + CELL_OVERHEAD_S + (c.deadline_s if overloaded(c) else 0.0) for c in cells
    )
    return STACK_START_S + per_cell


def resolve_path(name_or_path: str) -> Path:
    """`quick` → loadtests/profiles/quick.toml; anything with a suffix or a slash is a path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return Path(name_or_path)
    return PROFILES_DIR / f"{name_or_path}.toml"


def load_profile(name_or_path: str) -> Profile:
    path = resolve_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
        raise ProfileError(f"no profile '{name_or_path}' ({path}); known profiles: {known}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, source=str(path))


def parse_profile(data: dict[str, Any], source: str = "<profile>") -> Profile:
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'profile'}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"{source}: {problems}") from None
    budget = profile.run.max_wall_s
    if budget is not None and (estimate := estimated_wall_s(profile)) > budget:
        raise ProfileError(
            f"{source}: estimated wall time {estimate:.0f} s exceeds the profile's max_wall_s {budget:.0f} s "
            "(fewer cells or shorter durations)"
        )
    return profile
