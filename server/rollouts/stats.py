"""A wave's numbers from the database, for the pure gate evaluator.

The new version is judged on the wave's own devices since the wave started;
the previous version on the same devices over the hour before, so a gate
compares like with like (same sensors, same traffic) rather than the wave
with the rest of the fleet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgefleet.server.db.models import (
    DeviceEvent,
    Rollout,
    RolloutDevice,
    RolloutWave,
    TelemetryRecord,
)
from edgefleet.server.rollouts.gates import DeviceRolloutState, VersionStats, WaveStats

BEFORE_SECONDS = 3600.0
"""How far back before a wave the previous version's telemetry is read."""


class _Merged:
    """Counts summed over windows whose histograms share bounds (the agent's fixed ones)."""

    def __init__(self) -> None:
        self.inferences = 0
        self.errors = 0
        self.bounds: dict[str, tuple[float, ...]] = {}
        self.counts: dict[str, list[int]] = {}

    def add(self, inferences: int, errors: int, histograms: dict[str, Any]) -> None:
        self.inferences += inferences
        self.errors += errors
        for name in ("latency_ms", "confidence"):
            histogram = histograms.get(name)
            if not isinstance(histogram, dict):
                continue
            bounds = tuple(histogram["bounds"])
            counts = histogram["counts"]
            known = self.bounds.setdefault(name, bounds)
            if known != bounds:
                continue  # another agent build's buckets: not summable, left out
            total = self.counts.setdefault(name, [0] * len(counts))
            for i, count in enumerate(counts):
                total[i] += count

    def stats(self) -> VersionStats:
        return VersionStats(
            inferences=self.inferences,
            errors=self.errors,
            latency_bounds=self.bounds.get("latency_ms", ()),
            latency_counts=tuple(self.counts.get("latency_ms", ())),
            confidence_bounds=self.bounds.get("confidence", ()),
            confidence_counts=tuple(self.counts.get("confidence", ())),
        )


def _merge(rows: Iterable[Any]) -> VersionStats:
    merged = _Merged()
    for inferences, errors, histograms in rows:
        merged.add(inferences, errors, histograms if isinstance(histograms, dict) else {})
    return merged.stats()


def version_stats(
    session: Session, rollout: Rollout, device_ids: Sequence[str], started_at: float
) -> tuple[VersionStats, VersionStats]:
    """(new, previous) telemetry of ``device_ids`` around ``started_at``."""
    columns = (TelemetryRecord.inferences, TelemetryRecord.errors, TelemetryRecord.histograms)
    mine = (
        TelemetryRecord.device_id.in_(device_ids),
        TelemetryRecord.model == rollout.model_name,
    )
    new = session.execute(
        select(*columns).where(
            *mine,
            TelemetryRecord.version == rollout.version,
            TelemetryRecord.window_start >= started_at,
        )
    ).all()
    previous = session.execute(
        select(*columns).where(
            *mine,
            TelemetryRecord.version != rollout.version,
            TelemetryRecord.window_end <= started_at,
            TelemetryRecord.window_start >= started_at - BEFORE_SECONDS,
        )
    ).all()
    return _merge(new), _merge(previous)


def shadow_agreement(
    session: Session, rollout: Rollout, device_ids: Sequence[str]
) -> tuple[float | None, int]:
    """Agreement over every shadow comparison the wave's devices reported, weighted by samples."""
    total, agreeing = session.execute(
        select(
            func.sum(DeviceEvent.shadow_samples),
            func.sum(DeviceEvent.shadow_samples * DeviceEvent.shadow_agreement),
        ).where(
            DeviceEvent.rollout_id == rollout.id,
            DeviceEvent.device_id.in_(device_ids),
            DeviceEvent.shadow_samples.is_not(None),
        )
    ).one()
    if not total:
        return None, 0
    return float(agreeing or 0) / float(total), int(total)


def wave_stats(
    session: Session,
    rollout: Rollout,
    wave: RolloutWave,
    devices: Sequence[RolloutDevice],
    now: float,
) -> WaveStats:
    ids = [d.device_id for d in devices]
    new, previous = version_stats(session, rollout, ids, wave.started_at or now)
    agreement, samples = shadow_agreement(session, rollout, ids)
    return WaveStats(
        index=wave.index,
        counts=Counter(DeviceRolloutState(d.state) for d in devices),
        now=now,
        soak_started_at=wave.soak_started_at,
        new=new,
        previous=previous,
        shadow_agreement=agreement,
        shadow_samples=samples,
    )
