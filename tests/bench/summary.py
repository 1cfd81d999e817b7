"""Every benchmark's figures in one Markdown table, for the README.

``python -m tests.bench.summary`` (``make bench`` runs it last).

Reads each ``bench-results/*.json`` that has ``figures`` (the shape of
:mod:`tests.bench.results`; other JSON there, such as an end-to-end test's
notes, is left alone) and writes ``bench-results/summary.md``. Whether a goal
is met is worked out again from the value and the goal, not read from the
file. ``make bench`` keeps each bench's latest run (start, wall time, exit
status) in ``suite.json``; a second table shows them, and the figures of a
bench whose latest run failed are marked as coming from an earlier one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.bench.results import Figure, bound, results_dir

SUITE_FILE = "suite.json"
SUMMARY_FILE = "summary.md"
ORDER = ("ingest", "quantization", "agent", "drift", "rollout", "fleet")
"""The README's order: data in, models, devices, fleet. Other benches follow by name."""


def format_number(value: float) -> str:
    """Counts with thousands separators, ratios with two decimals, tiny values with two digits."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 0.01 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def format_goal(goal: str, unit: str) -> str:
    parsed = bound(goal)
    if parsed is None:
        return "—"
    operator, limit = parsed
    return f"{'≥' if operator == '>=' else '≤'} {limit:,g}{f' {unit}' if unit else ''}"


def format_met(met: bool | None) -> str:
    return "—" if met is None else "yes" if met else "**no**"


def render(
    documents: Sequence[Mapping[str, Any]], latest_runs: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The summary's Markdown: a line on the machine, the figures, each bench's latest run."""
    ordered = sorted(documents, key=_bench_order)
    runs = {run["bench"]: run for run in latest_runs}
    lines = ["No benchmark results with figures yet: run `make bench`."]
    if ordered:
        lines = [
            _machine_line(ordered),
            "",
            "| figure | result | goal | met |",
            "|---|---:|---:|---|",
        ]
    for document in ordered:
        stale = _stale(document, runs.get(document["bench"]))
        for figure in figures_of(document):
            name = figure.name.replace("|", "\\|") + (" *(earlier run)*" if stale else "")
            unit = f" {figure.unit}" if figure.unit else ""
            lines.append(
                f"| {name} | {format_number(figure.value)}{unit} "
                f"| {format_goal(figure.goal, figure.unit)} | {format_met(figure.met)} |"
            )
    if runs:
        lines += ["", "| bench | wall time | status |", "|---|---:|---|"]
        lines += [
            f"| {run['bench']} | {_duration(run['seconds'])} | {_status(run)} |"
            for run in sorted(runs.values(), key=_bench_order)
        ]
    return "\n".join(lines) + "\n"


def figures_of(document: Mapping[str, Any]) -> list[Figure]:
    """The document's figures, checked again (a hand-edited file gets a clear error)."""
    try:
        return [
            Figure(f["name"], float(f["value"]), f.get("unit", ""), f.get("goal", ""))
            for f in document["figures"]
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{document.get('bench', '?')}: malformed figure: {err}") from err


def _bench_order(item: Mapping[str, Any]) -> tuple[int, str]:
    name = str(item["bench"])
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def _machine_line(documents: Sequence[Mapping[str, Any]]) -> str:
    newest = max(documents, key=lambda d: str(d["written_at"]))
    machine = newest["machine"]
    ram = machine.get("ram_bytes")
    when = datetime.fromisoformat(newest["written_at"]).strftime("%Y-%m-%d %H:%M %Z")
    loads = sorted(d["machine"]["load_average_at_start"][0] for d in documents)
    load = f"{loads[0]:.2f}" if loads[0] == loads[-1] else f"{loads[0]:.2f}–{loads[-1]:.2f}"
    line = (
        f"Measured on {machine.get('cpu_model') or 'an unknown CPU'}, "
        f"{machine.get('usable_cores')} cores, "
        f"{f'{ram / 2**30:.0f} GiB RAM' if ram else 'RAM unknown'}, "
        f"{when}; load average at each bench's start {load}."
    )
    keys = ("cpu_model", "usable_cores", "ram_bytes")
    if len({tuple(d["machine"].get(k) for k in keys) for d in documents}) > 1:
        line += " Not every bench ran on this machine: see each bench's JSON."
    return line


def _stale(document: Mapping[str, Any], run: Mapping[str, Any] | None) -> bool:
    """Written before the bench's latest run, which failed: not what that run measured."""
    if run is None or (run["returncode"] == 0 and not run["timed_out"]):
        return False
    written = datetime.fromisoformat(document["written_at"])
    return written < datetime.fromisoformat(run["started_at"])


def _status(run: Mapping[str, Any]) -> str:
    if run["timed_out"]:
        return "**timed out**"
    return "ok" if run["returncode"] == 0 else f"**failed** (exit {run['returncode']})"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def load(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The bench documents in ``directory``, and the latest run of each bench the suite ran."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        if path.name == SUITE_FILE:
            continue
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "figures" in document:
            documents.append(document)
    return documents, latest_runs(directory)


def latest_runs(directory: Path) -> list[dict[str, Any]]:
    path = directory / SUITE_FILE
    runs: list[dict[str, Any]] = json.loads(path.read_text())["runs"] if path.is_file() else []
    return runs


def write_summary(directory: Path) -> str:
    """Render what ``directory`` holds into its ``summary.md``; print it too."""
    summary = render(*load(directory))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SUMMARY_FILE).write_text(summary)
    print(summary, end="")
    print(f"\nwritten to {directory / SUMMARY_FILE}")
    return summary


def main() -> int:
    write_summary(results_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
