"""`ragload bench` on an embedded stack for a test: its own Valkey and mock, the session's test index."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from loadtests.stack.services import ragload_command


def run_bench(
    profile: str, rag_env: dict[str, str], folder: Path, *flags: str, timeout_s: float = 900
) -> Path:
    """Write `profile` (TOML) into `folder`, run it with `--no-report` and `flags`; the run folder."""
    path = folder / "profile.toml"
    path.write_text(profile, encoding="utf-8")
    # Without OPENAI_BASE_URL the stack starts its own mock, whose latency the profile sets per trial.
    env = {key: value for key, value in {**os.environ, **rag_env}.items() if key != "OPENAI_BASE_URL"}
    done = subprocess.run(
        ragload_command(
            "bench", "--profile", str(path), "--out", str(folder / "runs"), "--no-report", *flags
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (folder / "runs").iterdir()
    return run_dir
