"""The batch writer on SQLite and PostgreSQL: exactly-once rows, presence, revoked devices."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from edgefleet.server.db.models import Device, DeviceEvent, TelemetryRecord
from edgefleet.server.ingest.pipeline import Presence, Routed
from edgefleet.server.ingest.writer import Batch, BatchWriter
from edgefleet.server.states import DeviceState

T = 1_767_225_600.0


def telemetry_row(device_id: str, seq: int) -> dict[str, object]:
    return {
        "device_id": device_id,
        "seq": seq,
        "window_start": T + seq,
        "window_end": T + seq + 1,
        "model": None,
        "version": None,
        "inferences": 10,
        "errors": 0,
        "latency_p50_ms": 1.0,
        "latency_p95_ms": 2.0,
        "cpu_percent": None,
        "memory_bytes": None,
        "temperature_c": None,
        "histograms": "{}",
        "received_at": T,
    }


def event_row(device_id: str, seq: int) -> dict[str, object]:
    return {
        "device_id": device_id,
        "seq": seq,
        "at": T,
        "kind": "received",
        "model": "kws",
        "version": 2,
        "rollout_id": None,
        "reason": None,
        "progress": None,
        "received_at": T,
        "shadow_samples": None,
        "shadow_agreement": None,
        "shadow_latency_delta_ms": None,
    }


def count(engine: Engine, table: type) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_duplicates_within_and_across_batches_are_stored_once(engine: Engine) -> None:
    writer = BatchWriter(engine)
    first = Batch()
    first.add(
        Routed(
            telemetry=[telemetry_row("cam-1", s) for s in (1, 2, 2, 3)],
            events=[event_row("cam-1", 1)],
        ),
        T,
    )
    result = writer.write(first)
    assert (result.telemetry_inserted, result.telemetry_duplicates) == (3, 0)
    second = Batch()
    second.add(
        Routed(
            telemetry=[telemetry_row("cam-1", s) for s in (3, 4)] + [telemetry_row("cam-2", 3)],
            events=[event_row("cam-1", 1)],
        ),
        T,
    )
    result = writer.write(second)
    assert (result.telemetry_inserted, result.telemetry_duplicates) == (2, 1)
    assert (result.events_inserted, result.events_duplicates) == (0, 1)
    assert count(engine, TelemetryRecord) == 5
    assert count(engine, DeviceEvent) == 1


def test_presence_updates_state_but_never_revives_a_revoked_device(engine: Engine) -> None:
    batch = Batch()
    for device_id, online in (("cam-1", False), ("cam-2", True), ("cam-3", True)):
        batch.add(Routed(presence=Presence(device_id, online, T + 9, "0.1.0", [])), T + 9)
    BatchWriter(engine).write(batch)
    with engine.connect() as connection:
        states = dict(connection.execute(select(Device.id, Device.state)).all())
    assert states == {
        "cam-1": DeviceState.OFFLINE,
        "cam-2": DeviceState.ONLINE,
        "cam-3": DeviceState.REVOKED,
    }


def test_telemetry_refreshes_last_seen(engine: Engine) -> None:
    batch = Batch()
    batch.add(Routed(telemetry=[telemetry_row("cam-2", 1)]), T + 42)
    BatchWriter(engine).write(batch)
    with engine.connect() as connection:
        seen = connection.execute(
            select(Device.last_seen_at).where(Device.id == "cam-2")
        ).scalar_one()
    assert seen == T + 42


def test_the_batch_counts_the_copies_it_folds_away() -> None:
    batch = Batch()
    batch.add(Routed(telemetry=[telemetry_row("cam-1", s) for s in (1, 2, 2)]), T)
    batch.add(Routed(telemetry=[telemetry_row("cam-1", 1)], events=[event_row("cam-1", 1)] * 2), T)
    assert (len(batch.telemetry), batch.telemetry_folded) == (2, 2)
    assert (len(batch.events), batch.events_folded) == (1, 1)
