"""The `ragload` command line.

Each sub-command lives in its own module, imported only when that command runs: `import locust`
monkey-patches the whole process with gevent, so no module is imported that the command does not need.
A command module exposes `add_arguments(parser)` and `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Order is the order `ragload --help` lists them in.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("loadtests.stack.up", "run the whole embedded stack in the foreground (Ctrl-C stops all)"),
    "mock": ("mocks.server", "run the mock OpenAI-compatible server"),
    "ingest": ("system.rag.ingest", "chunk, embed and index a corpus (default: the stdlib docstrings)"),
    "api": ("system.api", "run the queued API (FastAPI -> Valkey/RQ)"),
    "worker": ("system.worker", "run N RQ workers for the queued API"),
    "dlq": ("system.dlq", "list, show, requeue or purge the dead-letter queue (failed jobs)"),
    "baseline": ("sync_baseline.server", "run the synchronous baseline API"),
    "bench": ("loadtests.sweep.runner", "run a load sweep over both architectures and build its report"),
    "report": ("reports.build", "build plots and an HTML/Markdown report from a run folder"),
    "bench-mock": (
        "loadtests.bench.bench_mock",
        "measure the mock server's own throughput, added latency and clock",
    ),
    "probe-upstream": (
        "loadtests.upstream.probe",
        "measure an OpenAI-compatible endpoint and fit the mock's capacity model to it",
    ),
    "bench-queue": (
        "loadtests.bench.bench_queue",
        "measure the queue's overhead over inline and its submit latency",
    ),
    "bench-ci": (
        "loadtests.gate.command",
        "the regression gate: this tree against its base, A/B on this machine",
    ),
    "bench-gate": (
        "reports.gate.verdict",
        "the verdict table of a `ragload bench-ci` folder (exit 1: regression)",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragload",
        description="Queued vs inline RAG, measured side by side.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"ragload {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
