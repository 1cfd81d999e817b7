"""The one shape every benchmark writes, so the summary table needs no bench-specific code.

``bench-results/{bench}.json``::

    {"bench": "ingest", "machine": {...}, "written_at": "2026-01-01T00:00:00+00:00",
     "figures": [{"name": ..., "value": ..., "unit": ..., "goal": ">= 0.6", "met": true}],
     "details": {...whatever the bench measured besides...}}

A figure's goal is a bound (``">= 0.6"``, ``"<= 1.5"``) or empty for a figure
reported without one; ``met`` is derived from it, never set by hand.
``$EDGEFLEET_BENCH_RESULTS`` moves the directory (``make bench-quick`` writes
elsewhere, so quick numbers never replace the full run's).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.machine import machine_info

REPO = Path(__file__).resolve().parents[2]
ENV_DIRECTORY = "EDGEFLEET_BENCH_RESULTS"
_GOAL = re.compile(r"(>=|<=)\s*(\d[\d,]*(?:\.\d+)?|\.\d+)")
_BENCH = re.compile(r"[a-z][a-z0-9_]*")


def results_dir() -> Path:
    return Path(os.environ.get(ENV_DIRECTORY) or REPO / "bench-results")


@dataclass(frozen=True)
class Figure:
    """One measured number; ``goal`` is ``">= N"``, ``"<= N"`` (commas allowed) or ``""``."""

    name: str
    value: float
    unit: str = ""
    goal: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a figure needs a name")
        if not math.isfinite(self.value):
            raise ValueError(f"figure {self.name!r}: value {self.value!r} is not a finite number")
        bound(self.goal)  # refused here, not when the summary is written

    @property
    def met(self) -> bool | None:
        parsed = bound(self.goal)
        if parsed is None:
            return None
        operator, limit = parsed
        return self.value >= limit if operator == ">=" else self.value <= limit

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def bound(goal: str) -> tuple[str, float] | None:
    """``(">=", 8000.0)`` for ``">= 8,000"``; None for no goal; ValueError for anything else."""
    if not goal.strip():
        return None
    match = _GOAL.fullmatch(goal.strip())
    if match is None:
        raise ValueError(f"goal {goal!r} is not '>= number' or '<= number'")
    return match[1], float(match[2].replace(",", ""))


def write_results(
    bench: str,
    figures: Sequence[Figure],
    details: Mapping[str, Any],
    *,
    machine: Mapping[str, Any] | None = None,
    directory: Path | None = None,
) -> Path:
    """Write ``{directory}/{bench}.json`` whole or not at all (a temporary file, then a rename).

    ``machine``: :func:`~tests.bench.machine.machine_info` as taken at the
    bench's start; without it, it is taken now, load included.
    """
    if _BENCH.fullmatch(bench) is None:
        raise ValueError(f"bench name {bench!r} is not lowercase letters, digits and '_'")
    names = [f.name for f in figures]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{bench}: figure names repeat: {sorted({n for n in names if names.count(n) > 1})}"
        )
    document = {
        "bench": bench,
        "machine": dict(machine) if machine is not None else machine_info(),
        "figures": [f.as_json() for f in figures],
        "details": dict(details),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    target = (directory or results_dir()) / f"{bench}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    partial.replace(target)
    return target
