"""What a drift window is judged against: its model version's baseline, looked up once.

Every drift message names a model and version; the reference for it (the
baseline bins from the version's manifest, how many training samples they
came from, the version's mean confidence on them, the size of one input)
never changes once the version exists, so it is cached for good. A miss (a
version registered a moment ago through another replica, or one that does
not exist) asks the database again at most once per ``recheck_seconds``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from edgefleet.server.db.models import Artifact, Model, ModelVersion
from edgefleet.server.services import Clock
from edgefleet.shared import schema
from edgefleet.shared.manifest import Baseline, Manifest
from edgefleet.shared.signed import SignedEnvelope


@dataclass(frozen=True, slots=True)
class Reference:
    baseline: Baseline | None
    reference_size: int | None
    """Training samples the baseline was counted over (None: not recorded)."""
    mean_confidence: float | None
    """The version's mean top-class probability on those samples (None: not recorded)."""
    input_size: int
    """Values in one model input: what every edge sample must carry."""


def reference_of(metrics: dict[str, Any], manifest: Manifest) -> Reference:
    """A version's reference from its registered metrics and one of its manifests."""
    lineage = metrics.get("lineage") or {}
    train = lineage.get("baseline_rows", (lineage.get("split") or {}).get("train"))
    confidence = metrics.get("train_mean_confidence")
    return Reference(
        baseline=manifest.baseline,
        reference_size=train if isinstance(train, int) and train > 0 else None,
        mean_confidence=float(confidence) if isinstance(confidence, int | float) else None,
        input_size=math.prod(manifest.inputs[0].shape[1:]),
    )


class ReferenceDirectory:
    def __init__(self, engine: Engine, clock: Clock, *, recheck_seconds: float = 5.0) -> None:
        self._engine = engine
        self._clock = clock
        self._recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._found: dict[tuple[str, int], Reference] = {}
        self._misses: dict[tuple[str, int], float] = {}

    def get(self, model: str, version: int) -> Reference | None:
        key = (model, version)
        found = self._found.get(key)
        if found is not None:
            return found
        now = self._clock()
        if now - self._misses.get(key, float("-inf")) < self._recheck_seconds:
            return None
        loaded = self._load(model, version)
        with self._lock:
            if loaded is None:
                self._misses[key] = now
            else:
                self._found[key] = loaded
        return loaded

    def _load(self, model: str, version: int) -> Reference | None:
        query = (
            select(ModelVersion.metrics, Artifact.manifest)
            .join(Model, Model.id == ModelVersion.model_id)
            .join(Artifact, Artifact.version_id == ModelVersion.id)
            .where(Model.name == model, ModelVersion.version == version)
            .order_by(Artifact.hardware_profile)
            .limit(1)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        envelope = schema.from_json(SignedEnvelope, row.manifest)
        return reference_of(row.metrics or {}, Manifest.from_signed(envelope.signed))
