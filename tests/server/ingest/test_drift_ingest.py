"""Drift windows through the real ingest worker, on SQLite and PostgreSQL: judged, stored with
their samples, or refused whole with the reason counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import numpy as np
import pytest
from sqlalchemy import Engine, func, insert, select

from edgefleet.server.db.models import Artifact, DriftWindow, EdgeSample, Model, ModelVersion
from edgefleet.server.ingest import worker
from edgefleet.server.ingest.worker import Report, Shipment
from edgefleet.shared import messages, schema
from edgefleet.shared.messages import Drift, FeatureSketch, Sample, SampleReason
from edgefleet.shared.topics import Channel, device_topic
from tests.server.ingest.conftest import T
from tests.shared import factories


@pytest.fixture
def registered(engine: Engine) -> None:
    """``vibration`` v3 with the factory manifest's baseline: one feature, three bins."""
    envelope = factories.Fleet().sign(factories.manifest())
    with engine.begin() as connection:
        model_id = connection.scalar(
            insert(Model).values(name="vibration", description="", created_at=T).returning(Model.id)
        )
        version_id = connection.scalar(
            insert(ModelVersion)
            .values(
                model_id=model_id,
                version=3,
                stage="approved",
                metrics={"lineage": {"split": {"train": 5000}}, "train_mean_confidence": 0.9},
                quantization={},
                created_at=T,
                created_by="test",
            )
            .returning(ModelVersion.id)
        )
        connection.execute(
            insert(Artifact).values(
                version_id=version_id,
                hardware_profile="rpi4",
                variant="int8",
                sha256="0" * 64,
                size=1,
                manifest=schema.to_json(envelope),
                created_at=T,
            )
        )


@pytest.fixture
def pipe(engine: Engine, db_url: str, registered: None) -> Iterator[Connection]:
    ours, theirs = Pipe()
    thread = threading.Thread(target=worker.run, args=(theirs, db_url), daemon=True)
    thread.start()
    assert ours.poll(30)
    assert ours.recv() == "ready"
    yield ours
    ours.send(Shipment([], final=True))
    ours.recv()
    thread.join(10)


def drift(
    seq: int,
    counts: tuple[int, ...] = (100, 200, 100),
    *,
    version: int = 3,
    values: int = 4,
    name: str = "rms",
) -> tuple[str, bytes, float]:
    body = Drift(
        seq=seq,
        model="vibration",
        version=version,
        window_start=T + seq,
        window_end=T + seq + 1,
        count=sum(counts),
        features=(FeatureSketch(name=name, counts=counts),),
        mean_confidence=0.8,
        samples=(
            Sample(f"vibration.3.{seq}.r0", SampleReason.RESERVOIR, (0.5,) * values),
            Sample(f"vibration.3.{seq}.l0", SampleReason.LOW_CONFIDENCE, (1.5,) * values, 0.3),
        ),
    )
    return device_topic("cam-1", Channel.DRIFT), messages.encode(body), T


def ship(pipe: Connection, *received: tuple[str, bytes, float]) -> Report:
    pipe.send(Shipment(list(received)))
    assert pipe.poll(30)
    report: Report = pipe.recv()
    return report


def stored(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        windows = connection.scalar(select(func.count()).select_from(DriftWindow))
        samples = connection.scalar(select(func.count()).select_from(EdgeSample))
    return int(windows or 0), int(samples or 0)


def test_a_window_like_its_baseline_is_stored_unflagged_with_its_samples(
    engine: Engine, pipe: Connection
) -> None:
    report = ship(pipe, drift(1))
    assert report.rejections == []
    assert report.written is not None
    assert (report.written.drift_inserted, report.written.samples_inserted) == (1, 2)
    with engine.connect() as connection:
        window = connection.execute(select(DriftWindow)).one()
        values = connection.scalars(
            select(EdgeSample.values).where(EdgeSample.reason == "low_confidence")
        ).one()
    assert window.score is not None
    assert window.score < 1.0
    assert not window.flagged
    assert window.max_psi == pytest.approx(0.0, abs=1e-4)
    assert window.confidence_change == pytest.approx(0.8 - 0.9)
    assert window.counts == {"features": {"rms": [100, 200, 100]}, "output": None}
    assert np.array_equal(np.frombuffer(values, dtype="<f4"), np.full(4, 1.5, np.float32))


def test_a_shifted_window_is_flagged_and_a_redelivery_stores_nothing_twice(
    engine: Engine, pipe: Connection
) -> None:
    first = ship(pipe, drift(2, (20, 180, 200)), drift(2, (20, 180, 200)))
    again = ship(pipe, drift(2, (20, 180, 200)))
    assert first.drift_folded == 1
    assert again.written is not None
    assert again.written.drift_duplicates == 1
    with engine.connect() as connection:
        window = connection.execute(select(DriftWindow)).one()
    assert window.flagged
    assert window.score is not None
    assert window.score > 1.0
    assert stored(engine) == (1, 2)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (drift(3, (100, 300)), "sketch_mismatch"),
        (drift(3, name="peak"), "sketch_mismatch"),
        (drift(3, version=9), "unknown_model_version"),
        (drift(3, values=3), "sample_mismatch"),
    ],
)
def test_a_window_that_does_not_fit_its_version_is_refused_whole(
    engine: Engine, pipe: Connection, message: tuple[str, bytes, float], reason: str
) -> None:
    report = ship(pipe, message, drift(4))
    assert [(r.reason, r.device_id) for r in report.rejections] == [(reason, "cam-1")]
    assert stored(engine) == (1, 2)
