"""The Fleet page's "online over time" chart at 10,000 devices and a week of telemetry.

    python -m tests.bench.bench_presence [--devices 10000] [--days 7] [--window-seconds 900]

Seeds a migrated SQLite database on disk with ``--devices`` registered devices
and one telemetry row per device per ``--window-seconds`` over ``--days``
(raw ``executemany`` in time order, each device's windows offset from the
others'; 15-minute windows keep a week of 10,000 devices at 6.7M rows, which
seeds in minutes on two cores, where 60-s windows would be 100M). Then:

* **roll-up**: one :func:`~edgefleet.server.fleet.presence_rollup.roll_up` pass
  over everything, without a time budget: seconds and rows per second;
* **chart**: :func:`~edgefleet.server.fleet.overview.presence` for the last
  1 h, 6 h, 24 h and 7 d at the API's default 300 points, best of
  ``--repeat``; goal: every range under 0.5 s;
* **before**: the query ``presence()`` ran before the roll-up (distinct devices
  per bucket straight from telemetry), on the same data and with the same
  indexes, best of ``--repeat``; the ratio says what the roll-up bought.

Results go to ``bench-results/presence.json`` (:mod:`tests.bench.results`).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, cast, distinct, func, select
from sqlalchemy.orm import Session

from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import TelemetryRecord
from edgefleet.server.fleet import presence_rollup
from edgefleet.server.fleet.buckets import MAX_POINTS, choose_step
from edgefleet.server.fleet.overview import presence
from tests.bench.machine import machine_info, print_machine
from tests.bench.results import Figure, write_results

GOAL_SECONDS = 0.5
HOUR, DAY = 3600.0, 86_400.0
RANGES = {"1 h": HOUR, "6 h": 6 * HOUR, "24 h": DAY, "7 d": 7 * DAY}
SEED_BATCH = 50_000
T0 = 1_767_225_600.0


def seed(path: Path, devices: int, days: float, window: float) -> dict[str, float]:
    """Devices, then their telemetry windows in time order, as ingest would write them."""
    names = [f"bench-{i:05d}" for i in range(devices)]
    slots = int(days * DAY / window)
    started = time.perf_counter()
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.executemany(
            "INSERT INTO devices (id, profile, state, tags, labels, running, created_at,"
            " updated_at) VALUES (?, 'sim', 'online', '[]', '{}', '[]', ?, ?)",
            [(name, T0 - DAY, T0 - DAY) for name in names],
        )
        offsets = [(i * 7.31) % window for i in range(devices)]
        rows: list[tuple[Any, ...]] = []
        for slot in range(slots):
            for name, offset in zip(names, offsets, strict=True):
                start = T0 + slot * window + offset
                rows.append((name, slot + 1, start, start + window, start + window + 0.5))
            if len(rows) >= SEED_BATCH or slot == slots - 1:
                connection.executemany(
                    "INSERT INTO telemetry (device_id, seq, window_start, window_end,"
                    " inferences, errors, histograms, received_at)"
                    " VALUES (?, ?, ?, ?, 100, 0, '{}', ?)",
                    rows,
                )
                rows.clear()
        connection.commit()
    finally:
        connection.close()
    return {
        "rows": float(devices * slots),
        "seconds": time.perf_counter() - started,
        "end": T0 + slots * window,
    }


def raw_presence(session: Session, *, since: float, until: float, max_points: int) -> int:
    """The query ``presence()`` ran before the roll-up; returns the buckets it found."""
    step = choose_step(since, until, max_points)
    t = TelemetryRecord
    bucket = cast((t.window_start - since) / step, Integer).label("bucket")
    rows = session.execute(
        select(bucket, func.count(distinct(t.device_id)))
        .where(t.window_start >= since, t.window_start < until)
        .group_by(bucket)
    ).all()
    return len(rows)


def best_of(repeat: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    path = directory / "presence.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
        seeded = seed(path, args.devices, args.days, args.window_seconds)
        print(f"seeded {seeded['rows']:,.0f} rows in {seeded['seconds']:.1f} s", flush=True)
        end = seeded["end"]
        with Session(engine) as session:
            started = time.perf_counter()
            rolled = presence_rollup.roll_up(session, end + HOUR, budget_seconds=float("inf"))
            rollup_seconds = time.perf_counter() - started
        print(f"roll-up: {rolled.rows:,} rows in {rollup_seconds:.1f} s", flush=True)
        ranges: dict[str, dict[str, float]] = {}
        with Session(engine) as session:
            for label, span in RANGES.items():
                if span > args.days * DAY:
                    continue
                window = {"since": end - span, "until": end}
                series = presence(session, **window, max_points=MAX_POINTS)
                chart = best_of(
                    args.repeat, partial(presence, session, **window, max_points=MAX_POINTS)
                )
                before = best_of(
                    args.repeat, partial(raw_presence, session, **window, max_points=MAX_POINTS)
                )
                ranges[label] = {
                    "chart_seconds": chart,
                    "before_seconds": before,
                    "speedup": before / chart,
                    "points": len(series.points),
                    "peak_reporting": max(p.reporting for p in series.points),
                }
                print(f"{label}: chart {chart:.3f} s, before {before:.3f} s", flush=True)
    finally:
        engine.dispose()
    return {
        "setup": {
            "devices": args.devices,
            "days": args.days,
            "window_seconds": args.window_seconds,
            "database": "SQLite on disk (WAL), migrated schema with its indexes",
            "repeat": args.repeat,
        },
        "seed": seeded,
        "rollup": {
            "rows": rolled.rows,
            "minutes_written": rolled.minutes,
            "seconds": rollup_seconds,
            "rows_per_second": rolled.rows / rollup_seconds,
        },
        "ranges": ranges,
    }


def figures(results: dict[str, Any]) -> list[Figure]:
    setup = results["setup"]
    fleet = f"{setup['devices']:,} devices"
    rollup = results["rollup"]
    found = [
        Figure(
            f"presence: roll-up of {rollup['rows']:,} telemetry rows, {fleet}",
            rollup["rows_per_second"],
            "rows/s",
        )
    ]
    for label, row in results["ranges"].items():
        found += [
            Figure(
                f"presence: chart of the last {label}, {fleet}",
                row["chart_seconds"],
                "s",
                goal=f"<= {GOAL_SECONDS}",
            ),
            Figure(
                f"presence: chart of the last {label}, speed-up over the raw distinct query",
                row["speedup"],
                "x",
            ),
        ]
    return found


def table(results: dict[str, Any]) -> str:
    lines = [
        "| range | chart (roll-up) | before (raw distinct) | speed-up | peak online |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in results["ranges"].items():
        lines.append(
            f"| {label} | {row['chart_seconds']:.3f} s | {row['before_seconds']:.3f} s "
            f"| {row['speedup']:.1f}x | {row['peak_reporting']:,} |"
        )
    rollup, seeded = results["rollup"], results["seed"]
    lines.append(
        f"\nSeed: {seeded['rows']:,.0f} rows in {seeded['seconds']:.0f} s. Roll-up: "
        f"{rollup['rows']:,} rows in {rollup['seconds']:.1f} s "
        f"({rollup['rows_per_second']:,.0f} rows/s, {rollup['minutes_written']:,} minutes)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--window-seconds", type=float, default=900.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    machine = machine_info()
    print_machine(machine)
    with tempfile.TemporaryDirectory(prefix="edgefleet-presence-") as directory:
        results = measure(args, Path(directory))
    write_results("presence", figures(results), results, machine=machine)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
