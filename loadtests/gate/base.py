"""Which revision the change is compared with, a checkout of it, and a Python that can run it.

The base: `--base REV` or `BENCH_BASE=REV`, else the parent of HEAD (CI runs on a fresh clone of the submitted
main, where the previous main is not marked otherwise) — or HEAD itself when the working tree has uncommitted
changes to tracked files (then those changes are what is measured). No parent (the first commit, a shallow
clone) means no base: the gate then says so and checks the sanity bounds alone.

The base is checked out as a detached git worktree. It runs with the change's venv when the packages installed
there satisfy every requirement of the base's pyproject.toml (`dependencies` and `optional-dependencies`),
with `PYTHONPATH` pointing at its own tree so that its own code is imported; otherwise a venv with its
dependencies is built once, cached by their hash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

DEFAULT_PARENT = "HEAD~1"
GIT_TIMEOUT_S = 60
PIP_TIMEOUT_S = 900


class GateSetupError(RuntimeError):
    """The base cannot be prepared; the message says what failed."""


def git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
    except subprocess.CalledProcessError as exc:
        raise GateSetupError(f"git {' '.join(args)}: {exc.stderr.strip() or exc}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GateSetupError(f"git {' '.join(args)}: {exc}") from exc
    return done.stdout.strip()


def commit_of(repo: Path, rev: str) -> str | None:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except GateSetupError:
        return None


def has_uncommitted_changes(repo: Path) -> bool:
    return bool(git(repo, "status", "--porcelain", "--untracked-files=no"))


@dataclass(frozen=True)
class Base:
    rev: str | None  # None: there is no base to compare with
    label: str  # how it was chosen, or why there is none


def resolve_base(repo: Path, requested: str | None) -> Base:
    """The base commit; GateSetupError when a revision was asked for by name and does not exist."""
    if requested:
        rev = commit_of(repo, requested)
        if rev is None:
            raise GateSetupError(f"BENCH_BASE/--base {requested!r} is not a commit of this repository")
        return Base(rev, f"({requested}, as asked)")
    if has_uncommitted_changes(repo):
        return Base(commit_of(repo, "HEAD"), "(HEAD: the working tree has uncommitted changes)")
    rev = commit_of(repo, DEFAULT_PARENT)
    if rev is None:
        shallow = git(repo, "rev-parse", "--is-shallow-repository") == "true"
        why = "a shallow clone" if shallow else "the first commit"
        return Base(None, f"no parent of HEAD ({why}): nothing to compare with")
    return Base(rev, "(the parent of HEAD)")


def check_out(repo: Path, rev: str, path: Path) -> Path:
    """A detached worktree of `rev` at `path` (an earlier one there is replaced)."""
    remove_checkout(repo, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "--detach", "--force", str(path), rev)
    return path


def remove_checkout(repo: Path, path: Path) -> None:
    if path.exists():
        try:
            git(repo, "worktree", "remove", "--force", str(path))
        except GateSetupError:
            shutil.rmtree(path, ignore_errors=True)
    git(repo, "worktree", "prune")


def dependencies(tree: Path) -> list[str]:
    """Every requirement pyproject.toml names (runtime and optional), sorted: what a venv must hold."""
    try:
        project = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise GateSetupError(f"{tree}/pyproject.toml: {exc}") from exc
    optional = project.get("optional-dependencies", {})
    return sorted({*project.get("dependencies", []), *(r for group in optional.values() for r in group)})


def installed_satisfies(requirements: list[str]) -> bool:
    """Whether this interpreter's installed packages meet every requirement (extras are not looked into)."""
    for text in requirements:
        try:
            requirement = Requirement(text)
            version = metadata.version(requirement.name)
        except (InvalidRequirement, metadata.PackageNotFoundError):
            return False
        if not requirement.specifier.contains(version, prereleases=True):
            return False
    return True


def python_for(base_tree: Path, cache: Path) -> tuple[Path, str]:
    """The interpreter that runs the base, and a line saying which one and why."""
    wanted = dependencies(base_tree)
    if installed_satisfies(wanted):
        return Path(sys.executable), "the change's venv (it meets the base's requirements)"
    digest = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:12]
    home = cache / f"venv-{digest}"
    python = home / "bin" / "python"
    if not (home / ".complete").exists():
        shutil.rmtree(home, ignore_errors=True)
        venv.create(home, with_pip=True)
        try:
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", *wanted],
                check=True,
                timeout=PIP_TIMEOUT_S,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise GateSetupError(f"installing the base's dependencies into {home} failed: {exc}") from exc
        (home / ".complete").touch()
    return python, f"a venv of its own dependencies ({home})"
