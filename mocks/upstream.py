"""Upstream profiles: TOML files of mock config keys that make the mock behave like one upstream.

    description = "..."
    [config]            # any keys of /_mock/config, e.g.
    capacity = "batch"
    max_batch = 24
    step_base = "8ms"
    [fit]               # optional: how `ragload probe-upstream` measured and fitted it (the mock ignores it)

`ragload mock --upstream NAME|FILE` starts from one (flags given beside it win), `PUT /_mock/config
{"upstream": NAME|FILE}` switches to one live, and a bench profile names one in its `[mock]` table. Built-in
presets live in mocks/upstreams/: `unbounded` (today's per-call latency model) and `vllm-like`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mocks.config import ConfigError, MockConfig

PRESETS_DIR = Path(__file__).parent / "upstreams"
TOP_LEVEL_KEYS = frozenset({"description", "config", "fit"})


def presets() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


def upstream_path(name_or_path: str) -> Path:
    """`vllm-like` -> mocks/upstreams/vllm-like.toml; anything with a suffix or a slash is a path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return Path(name_or_path)
    return PRESETS_DIR / f"{name_or_path}.toml"


def load_upstream(name_or_path: str) -> dict[str, Any]:
    """The profile's config keys, checked against MockConfig; raises ConfigError saying what is wrong."""
    path = upstream_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no upstream profile '{name_or_path}' ({path}); presets: {', '.join(presets())}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level keys {sorted(unknown)} (known: {sorted(TOP_LEVEL_KEYS)})"
        )
    config = data.get("config")
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: needs a [config] table of mock config keys")
    try:
        MockConfig().updated(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return dict(config)
