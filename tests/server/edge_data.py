"""Edge samples and drift windows as ingest stores them, for the read and label side's tests.

Ingest is tested on its own path (MQTT to rows); here rows go in through the
ORM, for a model version registered for real: a converted ``.tflite`` with a
signed manifest carrying a baseline, trained (by its lineage) on a real
dataset version whose schema gives the label set and the input shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgefleet.server import registry
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import DatasetVersion, DriftWindow, EdgeSample, ModelVersion
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.signing import SigningService
from edgefleet.server.training import baseline, dataset_registry
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema, Samples, SplitSpec
from edgefleet.shared.manifest import Baseline

LABELS = ("idle", "normal", "fault")
FEATURES = ("f0", "f1", "f2", "f3")
TRAIN_ROWS = 600
_seqs = itertools.count(1)


@dataclass(frozen=True)
class Registered:
    model: str
    version: ModelVersion
    dataset: DatasetVersion
    baseline: Baseline


def training_samples(rows: int = TRAIN_ROWS, seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    layout = DatasetSchema(
        kind=DatasetKind.TABULAR, shape=(4,), feature_names=FEATURES, labels=LABELS
    )
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (np.arange(rows) % len(LABELS)).astype(np.int32)
    return Samples(layout, x, y)


def register(
    session: Session,
    *,
    store: ArtifactStore,
    signing: SigningService,
    catalog: ProfileCatalog,
    tflite: bytes,
    model: str,
    dataset: str,
    now: float,
) -> Registered:
    """``dataset`` v1 imported, and ``model``'s next version registered as trained on it."""
    samples = training_samples()
    imported = dataset_registry.import_version(
        session=session,
        store=store,
        name=dataset,
        samples=samples,
        split=SplitSpec(),
        source={"format": "test"},
        actor="test",
        now=now,
    ).version
    assert samples.y is not None
    bins = baseline.compute(
        x=samples.x,
        feature_names=FEATURES,
        outputs=np.eye(len(LABELS))[samples.y],
        classes=len(LABELS),
    )
    version = registry.add_version(
        session=session,
        model_name=model,
        uploads=[registry.ArtifactUpload("sim", "float32", tflite)],
        spec=registry.VersionSpec(
            dataset_hash=imported.sha256,
            baseline=bins,
            metrics={"lineage": {"baseline_rows": TRAIN_ROWS}},
        ),
        store=store,
        signing=signing,
        catalog=catalog,
        actor="test",
        now=now,
    )
    return Registered(model, version, imported, bins)


def add_samples(
    session: Session,
    *,
    model: str,
    version: int,
    device: str,
    values: Sequence[Sequence[float]],
    received_at: float,
    reason: str = "reservoir",
    label: str | None = None,
    window_seq: int = 1,
) -> list[int]:
    """Samples as ingest writes them (float32 little-endian); their ids."""
    rows = [
        EdgeSample(
            device_id=device,
            sample_id=f"s{next(_seqs)}",
            model=model,
            version=version,
            window_seq=window_seq,
            reason=reason,
            confidence=0.5 if reason == "low_confidence" else None,
            values=np.asarray(v, dtype="<f4").tobytes(),
            label=label,
            labelled_at=None if label is None else received_at,
            labelled_by=None if label is None else "someone",
            received_at=received_at,
        )
        for v in values
    ]
    session.add_all(rows)
    session.commit()
    return [r.id for r in rows]


def add_window(
    session: Session,
    *,
    model: str,
    version: int,
    device: str,
    end: float,
    count: int,
    features: dict[str, list[int]],
    output: list[int] | None = None,
    score: float | None = None,
    flagged: bool = False,
    confidence_change: float | None = None,
) -> DriftWindow:
    seq = select(func.max(DriftWindow.seq)).where(DriftWindow.device_id == device)
    latest = session.scalar(seq)
    window = DriftWindow(
        device_id=device,
        seq=(latest or 0) + 1,
        model=model,
        version=version,
        window_start=end - 60,
        window_end=end,
        count=count,
        score=score,
        flagged=flagged,
        max_psi=None,
        max_ks=None,
        output_psi=None,
        mean_confidence=None,
        confidence_change=confidence_change,
        statistics={},
        counts={"features": features, "output": output},
        samples=0,
        received_at=end,
    )
    session.add(window)
    session.commit()
    return window


def draw(
    bins: Baseline, count: int, rng: np.random.Generator, tilt: float = 0.0
) -> dict[str, list[int]]:
    """``count`` inferences from the baseline's shares, ``tilt`` of them moved to the top bin."""
    found = {}
    for b in bins.features:
        shares = np.asarray(b.probabilities) / np.sum(b.probabilities) * (1 - tilt)
        shares[-1] += tilt
        found[b.name] = rng.multinomial(count, shares / shares.sum()).tolist()
    return found
