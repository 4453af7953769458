"""The shared vocabulary of the verdict lines: the Verdict record and how loads, times and series read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reports.run_data import CellSummary

TIMEOUT_ONSET = 0.01  # a cell "times out" when more than 1 % of its requests passed the deadline
LOAD_NAMES = {"closed": "closed loop", "open": "open loop"}


@dataclass(frozen=True)
class Verdict:
    topic: str
    text: str
    supported: bool = True  # False: the comparison is impossible with this run; `text` says why


def format_ms(ms: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def format_load(cell: CellSummary) -> str:
    value = cell.load_value
    if value is None:
        return "unknown load"
    return f"{value:g} users" if cell.load == "closed" else f"{value:g} req/s"


def series_name(cell: CellSummary) -> str:
    return f"{cell.architecture}/{cell.mode}"


def measured(cells: Iterable[CellSummary]) -> list[CellSummary]:
    """Cells with at least one request and a known load."""
    return [c for c in cells if c.requests > 0 and c.load_value is not None]
