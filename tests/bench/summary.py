"""Every benchmark's figures in one Markdown table, for the README.

``python -m tests.bench.summary`` (``make bench`` runs it last).

Reads each ``bench-results/*.json`` that has ``figures`` (the shape of
:mod:`tests.bench.results`; other JSON there, such as an end-to-end test's
notes, is left alone) and writes ``bench-results/summary.md``. Whether a goal
is met is worked out again from the value and the goal, not read from the
file. When ``make bench`` left ``suite.json`` (wall time and exit status of
each bench), a second table shows it, and the figures of a bench that failed
in that run are marked as coming from an earlier run.
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


def render(documents: Sequence[Mapping[str, Any]], suite: Mapping[str, Any] | None = None) -> str:
    """The summary's Markdown: a line on the machine, the figures, and the last run's benches."""
    ordered = sorted(documents, key=_bench_order)
    runs = {run["bench"]: run for run in (suite or {}).get("runs", [])}
    lines = ["No benchmark results with figures yet: run `make bench`."]
    if ordered:
        lines = [
            _machine_line(ordered),
            "",
            "| figure | result | goal | met |",
            "|---|---:|---:|---|",
        ]
    for document in ordered:
        stale = _stale(document, runs.get(document["bench"]), suite)
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


def _stale(
    document: Mapping[str, Any], run: Mapping[str, Any] | None, suite: Mapping[str, Any] | None
) -> bool:
    """Written before the last suite started, by a bench that failed or did not run in it."""
    if suite is None:
        return False
    written_before = str(document["written_at"]) < str(suite["started_at"])
    return written_before and (run is None or run["returncode"] != 0)


def _status(run: Mapping[str, Any]) -> str:
    if run["timed_out"]:
        return "**timed out**"
    return "ok" if run["returncode"] == 0 else f"**failed** (exit {run['returncode']})"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def load(directory: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    documents = []
    for path in sorted(directory.glob("*.json")):
        if path.name == SUITE_FILE:
            continue
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "figures" in document:
            documents.append(document)
    suite_path = directory / SUITE_FILE
    suite = json.loads(suite_path.read_text()) if suite_path.is_file() else None
    return documents, suite


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
