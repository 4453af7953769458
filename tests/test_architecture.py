"""The imports follow the architecture (docs/architecture.md, "Boundaries"), checked from the source.

Every import in every module of the five packages is read with `ast` — function-level imports and
`importlib.import_module("…")` with a literal name too — so a violation anywhere fails here:
- the RAG core (`system/rag/`) imports nothing of ours outside itself, and has no import cycle;
- the queued system (`system/`) imports only `system/`; the baseline (`sync_baseline/`) only itself and the
  core: the two architectures share the core and nothing else;
- the mock (`mocks/`) imports only `mocks/`;
- the reports (`reports/`) import only `reports/`: they read run folders, never a system, the mock or the
  harness;
- only the Locust scenarios (`loadtests/locust/`) import `locust` or `gevent` (`import locust` patches the
  whole process with gevent), and the rest of the harness imports of them only the plain-data shapes;
- no package imports `tests/` or `benchmarks/`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("system", "sync_baseline", "mocks", "loadtests", "reports")
OURS = (*PACKAGES, "tests", "benchmarks")
CORE = "system.rag"
LOCUST = "loadtests.locust"
LOCUST_FREE = ("loadtests.locust", "loadtests.locust.shapes")  # importable outside a Locust process
GEVENT_PATCHERS = ("locust", "gevent")


@dataclass(frozen=True)
class Import:
    importer: str  # the module that imports
    target: str  # what it imports, resolved to an absolute dotted name
    line: int


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources() -> dict[str, tuple[str, bool]]:
    """Module name -> (source, is a package's __init__) for every module of the five packages."""
    return {
        module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _absolute(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_in(importer: str, source: str, is_package: bool = False) -> Iterator[Import]:
    """Every import of `source`, wherever it stands. `from a import b` yields `a` and `a.b` (b may be a
    module); `importlib.import_module("x")` and `__import__("x")` with a literal name yield `x`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (Import(importer, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(importer, is_package, node.module, node.level)
            yield Import(importer, base, node.lineno)
            yield from (
                Import(importer, f"{base}.{alias.name}", node.lineno)
                for alias in node.names
                if alias.name != "*"
            )
        elif isinstance(node, ast.Call) and node.args and _is_dynamic_import(node.func):
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                yield Import(importer, name.value, node.lineno)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violation(found: Import) -> str | None:
    """Why `found` breaks a boundary, or None when it is allowed."""
    importer, target = found.importer, found.target
    top = target.split(".")[0]
    if top in GEVENT_PATCHERS:
        return (
            None if within(importer, LOCUST) else f"only {LOCUST} may import {top} (it patches the process)"
        )
    if top not in OURS:
        return None  # the standard library or a dependency
    if top in ("tests", "benchmarks"):
        return f"no package imports {top}/"
    rules = [
        (CORE, (CORE,), "the RAG core imports nothing of ours outside system/rag/"),
        ("system", ("system",), "the queued system imports only system/ (no baseline, mock, harness)"),
        ("sync_baseline", ("sync_baseline", CORE), "the baseline imports only itself and the RAG core"),
        ("mocks", ("mocks",), "the mock imports nothing of ours outside mocks/"),
        ("reports", ("reports",), "reports read run folders: no system, mock or harness import"),
    ]
    for package, allowed, reason in rules:
        if within(importer, package):
            return None if any(within(target, ok) for ok in allowed) else reason
    if within(target, LOCUST) and not within(importer, LOCUST):
        if target == LOCUST or within(target, LOCUST_FREE[1]):
            return None
        return f"outside Locust processes only {', '.join(LOCUST_FREE)} may be imported from {LOCUST}"
    return None  # the harness starts the systems and the mock, and builds reports


def violations(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """One line per import statement that crosses a boundary: `module:line imports target: rule`."""
    found: dict[tuple[str, int], str] = {}
    for module, (source, is_package) in sources.items():
        for each in imports_in(module, source, is_package):
            reason = violation(each)
            if reason is not None:
                found.setdefault((module, each.line), f"{module}:{each.line} imports {each.target}: {reason}")
    return list(found.values())


def module_graph(sources: Mapping[str, tuple[str, bool]], package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (a name imported from a module counts as the module)."""
    modules = {name for name in sources if within(name, package)}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name in modules:
        source, is_package = sources[name]
        for found in imports_in(name, source, is_package):
            target = _owning_module(found.target, modules)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def _owning_module(target: str, modules: Iterable[str]) -> str | None:
    known = set(modules)
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`, each as a path that comes back to where it started."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" once left

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


# ---- the repository ------------------------------------------------------------------------------------


def test_every_import_follows_the_boundaries() -> None:
    sources = package_sources()
    assert len(sources) > 50 and {CORE, "system.rag.llm", "reports.build", "mocks.app"} <= set(sources)
    assert violations(sources) == []


@pytest.mark.parametrize("package", [CORE, *PACKAGES])
def test_no_import_cycle(package: str) -> None:
    assert cycles(module_graph(package_sources(), package)) == []


# ---- the check itself can fail -------------------------------------------------------------------------

BROKEN = [
    ("system.rag.llm", "def call():\n    from system.metrics import observe_llm\n"),  # function-level
    ("system.rag.pipeline", "import sync_baseline.settings\n"),
    ("system.rag.store", "from loadtests.stack import services\n"),
    ("system.api", "from sync_baseline.metrics import outcome_of\n"),
    ("system.worker", "from mocks.latency import LatencySpec\n"),
    ("system.jobs", "import loadtests.stack.services\n"),
    ("sync_baseline.app", "from system.metrics import render_metrics\n"),
    ("sync_baseline.metrics", "from system import metrics\n"),
    ("sync_baseline.server", "from reports import build\n"),
    ("mocks.app", "from system.rag.prompt import build_messages\n"),
    ("mocks.server", "import importlib\nimportlib.import_module('loadtests.stack.services')\n"),
    ("reports.queueing", "from mocks.latency import LatencySpec\n"),
    ("reports.build", "from loadtests.sweep import runner\n"),
    ("reports.plots", "from system.rag.schemas import Source\n"),
    ("reports.render", "import sync_baseline.app\n"),
    ("loadtests.sweep.runner", "import locust\n"),
    ("loadtests.sweep.run_folder", "from loadtests.locust.user_support import settings\n"),
    ("system.api", "import gevent\n"),
    ("loadtests.stack.up", "from tests.conftest import MockServer\n"),
    ("reports.faults.data", "from .. import run_data\nfrom ...system import api\n"),  # relative
]
ALLOWED = [
    ("system.rag.llm", "from system.rag.breaker import llm_guard\n"),
    ("system.api", "from system.rag.errors import RagError\nfrom system.metrics import JOBS_ACCEPTED\n"),
    ("sync_baseline.app", "from system.rag.pipeline import get_pipeline\n"),
    ("mocks.server", "from mocks.config import MockConfig\nimport orjson\n"),
    ("reports.faults.data", "from ..run_data import RunFolderError\n"),
    ("loadtests.sweep.run_folder", "from loadtests.locust.shapes import LATE_TOLERANCE_S\n"),
    ("loadtests.stack.embedded_stack", "from system.autoscale import Autoscaler\nimport sync_baseline\n"),
    (
        "loadtests.sweep.runner",
        "from reports.build import build_report\nfrom mocks.latency import LatencySpec\n",
    ),
    ("loadtests.locust.queued_chat_user", "import locust\nimport gevent\n"),
]


@pytest.mark.parametrize(("module", "source"), BROKEN)
def test_a_crossed_boundary_is_reported(module: str, source: str) -> None:
    found = violations({module: (source, False)})
    assert found and all(line.startswith(f"{module}:") for line in found)


@pytest.mark.parametrize(("module", "source"), ALLOWED)
def test_an_allowed_import_is_not(module: str, source: str) -> None:
    assert violations({module: (source, False)}) == []


def test_a_cycle_is_reported() -> None:
    sources = {
        "system.rag.a": ("from system.rag.b import x\n", False),
        "system.rag.b": ("def late():\n    import system.rag.a\n", False),
        "system.rag.c": ("from system.rag import a\n", False),
    }
    assert cycles(module_graph(sources, CORE)) == [["system.rag.a", "system.rag.b", "system.rag.a"]]
