"""Which base the gate compares with, its checkout, and whether the change's venv can run it (real git)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from loadtests.gate.base import (
    GateSetupError,
    check_out,
    commit_of,
    dependencies,
    installed_satisfies,
    remove_checkout,
    resolve_base,
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, text: str) -> str:
    (repo / "file.txt").write_text(text)
    git(repo, "add", "file.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", text)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    return path


def test_the_default_base_is_the_parent_of_head(repo: Path) -> None:
    first = commit(repo, "one")
    commit(repo, "two")
    base = resolve_base(repo, None)
    assert base.rev == first and "parent of HEAD" in base.label


def test_uncommitted_changes_are_compared_with_head(repo: Path) -> None:
    commit(repo, "one")
    head = commit(repo, "two")
    (repo / "file.txt").write_text("three, not committed")
    assert resolve_base(repo, None).rev == head


def test_a_named_base_is_used_and_a_missing_one_refused(repo: Path) -> None:
    first = commit(repo, "one")
    commit(repo, "two")
    commit(repo, "three")
    assert resolve_base(repo, first[:10]).rev == first
    with pytest.raises(GateSetupError, match="not a commit"):
        resolve_base(repo, "no-such-revision")


def test_the_first_commit_and_a_shallow_clone_have_no_base(repo: Path, tmp_path: Path) -> None:
    commit(repo, "one")
    first = resolve_base(repo, None)
    assert first.rev is None and "first commit" in first.label
    commit(repo, "two")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    base = resolve_base(shallow, None)
    assert base.rev is None and "shallow clone" in base.label


def test_the_base_is_checked_out_beside_and_removed(repo: Path, tmp_path: Path) -> None:
    first = commit(repo, "one")
    commit(repo, "two")
    tree = check_out(repo, first, tmp_path / "cache" / "base")
    assert (tree / "file.txt").read_text() == "one"
    assert commit_of(tree, "HEAD") == first
    again = check_out(repo, first, tmp_path / "cache" / "base")  # an earlier checkout is replaced
    assert again == tree
    remove_checkout(repo, tree)
    assert not tree.exists()
    assert str(tree) not in git(repo, "worktree", "list")


def test_the_change_venv_runs_the_base_only_if_it_meets_its_requirements(tmp_path: Path) -> None:
    assert installed_satisfies(["pytest>=1", "scipy"])
    assert not installed_satisfies(["pytest>=9999"])
    assert not installed_satisfies(["surely-not-installed-ragload-pkg"])
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["b>=1", "a"]\n[project.optional-dependencies]\ndev = ["c"]\n'
    )
    assert dependencies(tmp_path) == ["a", "b>=1", "c"]
