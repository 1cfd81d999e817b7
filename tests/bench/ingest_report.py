"""What :mod:`tests.bench.bench_ingest` measured, as a printed table and as summary figures."""

from __future__ import annotations

from typing import Any

from tests.bench.results import Figure

GOAL_RATIO = 0.6
GOAL_WINDOWS_PER_CPU_SECOND = 8_000
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def table(
    summary: dict[str, Any], writer: dict[str, Any], writer_postgres: dict[str, Any] | None
) -> str:
    lines = [
        "| path | messages/s | windows/s | ratio to raw (goal >= 0.6) "
        "| windows per consumer CPU-s (goal >= 8,000) |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, entry in summary.items():
        ratio = entry.get("ratio_to_raw")
        per_cpu = f"{entry['windows_per_consumer_cpu_second']:,.0f}"
        if "windows_per_cpu_second_with_postgres" in entry:
            per_cpu += f" ({entry['windows_per_cpu_second_with_postgres']:,.0f} with PostgreSQL's)"
        lines.append(
            f"| {'raw paho' if kind == 'raw' else 'ingest, ' + kind} "
            f"| {entry['messages_per_second']:,.0f} | {entry['windows_per_second']:,.0f} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} | {per_cpu} |"
        )
    rates = writer["rows_per_second"]
    lines += [
        "",
        "| SQLite writes | rows/s | writer / this (goal >= 0.6) |",
        "|---|---:|---:|",
        f"| BatchWriter.write | {rates['writer']:,.0f} | - |",
        f"| sqlite3.executemany, tuples ready | {rates['executemany']:,.0f} "
        f"| {writer['ratio']:.2f} |",
        f"| sqlite3.executemany, dicts -> tuples + JSON timed | "
        f"{rates['executemany_converting']:,.0f} | {writer['ratio_vs_converting']:.2f} |",
    ]
    if writer_postgres is not None:
        rates = writer_postgres["rows_per_second"]
        lines += [
            "",
            "| PostgreSQL writes | rows/s | writer / this (goal >= 0.6) |",
            "|---|---:|---:|",
            f"| BatchWriter.write | {rates['writer']:,.0f} | - |",
            f"| psycopg executemany, tuples ready | {rates['executemany']:,.0f} "
            f"| {writer_postgres['ratio']:.2f} |",
            f"| COPY into a temporary table + INSERT ... SELECT | {rates['copy']:,.0f} "
            f"| {writer_postgres['ratio_vs_copy']:.2f} (no goal) |",
        ]
    return "\n".join(lines)


def figures(results: dict[str, Any]) -> list[Figure]:
    """The summary's rows: ratios to the limits of this run, then CPU cost, then the writer."""
    ratio_goal = f">= {GOAL_RATIO}"
    summary = results["summary"]
    backends = [(k, label) for k, label in BACKENDS.items() if k in summary]
    found = [
        Figure(
            "raw paho receive rate (the ingest's limit)",
            summary["raw"]["messages_per_second"],
            "msg/s",
        ),
        *(
            Figure(
                f"ingest (broker → validated → committed) ÷ raw paho receive rate, {label}",
                summary[kind]["ratio_to_raw"],
                goal=ratio_goal,
            )
            for kind, label in backends
        ),
        # SQLite works inside the ingest worker; PostgreSQL's own processes are added.
        *(
            Figure(
                f"telemetry windows per server CPU-second, {label}",
                summary[kind].get(
                    "windows_per_cpu_second_with_postgres",
                    summary[kind]["windows_per_consumer_cpu_second"],
                ),
                goal=f">= {GOAL_WINDOWS_PER_CPU_SECOND:,}",
            )
            for kind, label in backends
        ),
        Figure(
            "batch writer ÷ raw `sqlite3.executemany`", results["writer"]["ratio"], goal=ratio_goal
        ),
    ]
    postgres = results["writer_postgresql"]
    if postgres is not None:
        found += [
            Figure(
                "batch writer ÷ raw psycopg `executemany`, PostgreSQL",
                postgres["ratio"],
                goal=ratio_goal,
            ),
            Figure(
                "batch writer ÷ psycopg `COPY` via a temporary table, PostgreSQL",
                postgres["ratio_vs_copy"],
            ),
        ]
    return found
