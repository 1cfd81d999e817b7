"""``BatchWriter.write`` against ``sqlite3.executemany``: same schema, rows and transactions.

The rows are what ``route()`` makes of the benchmark's payloads, in batches of
the service's size; routing is outside every timing. Both ways insert with
``ON CONFLICT (device_id, seq) DO NOTHING`` and refresh ``last_seen_at`` per
batch, one transaction per batch, on a fresh WAL database each try.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import TelemetryRecord
from edgefleet.server.ingest.pipeline import Routed, route
from edgefleet.server.ingest.writer import Batch, BatchWriter
from tests.bench.consumers import BATCH_MESSAGES, Kind
from tests.bench.databases import Databases, stored_windows
from tests.harness.telemetry import T

Message = tuple[str, str, bytes]
"""(device id, topic, payload)"""


Way = Callable[[str, list[Batch]], float]
"""One way of writing the batches into the database at a URL; the seconds it took."""

TELEMETRY_COLUMNS = [c.name for c in TelemetryRecord.__table__.columns if c.name != "id"]


def routed_batches(messages: list[Message], devices: set[str]) -> list[Batch]:
    batches: list[Batch] = []
    for index, (_, topic, body) in enumerate(messages):
        if index % BATCH_MESSAGES == 0:
            batches.append(Batch())
        routed = route(topic, body, received_at=T, known_devices=devices)
        assert isinstance(routed, Routed)
        batches[-1].add(routed, T)
    return batches


def as_parameters(batch: Batch) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in TELEMETRY_COLUMNS) for row in batch.telemetry.values()]


def time_writer(url: str, batches: list[Batch]) -> float:
    engine = make_engine(url)
    try:
        writer = BatchWriter(engine)
        started = time.perf_counter()
        for batch in batches:
            writer.write(batch)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def time_executemany(path: Path, batches: list[Batch], *, convert: bool) -> float:
    """Same statements and transactions as the writer, through ``sqlite3`` directly.

    ``convert``: include turning the writer's row dicts into parameter tuples
    in the time; without it, only ``executemany``.
    """
    columns = ", ".join(TELEMETRY_COLUMNS)
    marks = ", ".join("?" * len(TELEMETRY_COLUMNS))
    insert_rows = (
        f"INSERT INTO telemetry ({columns}) VALUES ({marks}) "  # noqa: S608  # our own column names
        "ON CONFLICT (device_id, seq) DO NOTHING"
    )
    seen = "UPDATE devices SET last_seen_at = ? WHERE id = ?"
    prepared = None if convert else [as_parameters(b) for b in batches]
    connection = sqlite3.connect(path)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            connection.execute(f"PRAGMA {pragma}")
        started = time.perf_counter()
        for index, batch in enumerate(batches):
            rows = as_parameters(batch) if prepared is None else prepared[index]
            with connection:
                inserted = connection.executemany(insert_rows, rows).rowcount
                connection.executemany(seen, [(t, d) for d, t in batch.seen.items()])
            assert inserted == len(rows)
        return time.perf_counter() - started
    finally:
        connection.close()


def compare(
    databases: Databases, kind: Kind, ways: Mapping[str, Way], batches: list[Batch], repeat: int
) -> dict[str, Any]:
    """Rows/s of each way (medians), each try on a fresh database of ``kind``, rows counted."""
    rows = sum(len(b.telemetry) for b in batches)
    timings: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeat):
        for name, way in ways.items():
            with databases.fresh(kind) as url:
                timings[name].append(way(url, batches))
                if (stored := stored_windows(url)) != rows:
                    raise RuntimeError(f"{kind} {name} stored {stored} rows, not {rows}")
    return {
        "rows": rows,
        "batches": len(batches),
        "rows_per_second": {name: rows / statistics.median(t) for name, t in timings.items()},
        "seconds": timings,
    }


def bench_writer(databases: Databases, batches: list[Batch], repeat: int) -> dict[str, Any]:
    """The writer against ``sqlite3.executemany``, with and without building the tuples."""

    def executemany(convert: bool) -> Way:
        return lambda url, b: time_executemany(_sqlite_path(url), b, convert=convert)

    ways = {
        "writer": time_writer,
        "executemany": executemany(False),
        "executemany_converting": executemany(True),
    }
    result = compare(databases, "sqlite", ways, batches, repeat)
    rates = result["rows_per_second"]
    result["ratio"] = rates["writer"] / rates["executemany"]
    result["ratio_vs_converting"] = rates["writer"] / rates["executemany_converting"]
    return result


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database is not None
    return Path(database)
