"""Drift over time and over many devices: judged windows summed into time buckets (pure).

Each stored window was judged on its own at ingest. What an operator also
needs is whether a *group* drifts when no single device is sure yet: a
bucket's windows of one model version are pooled (their counts summed bin
by bin, their inference counts summed as the pooled window's size) and the
pool is judged like one large window, against that version's baseline,
with limits calibrated for its size. Versions are pooled apart: two
versions have different baselines and bins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgefleet.server.drift.statistics import (
    Calibration,
    FeatureDrift,
    SketchMismatch,
    judge,
    pool,
)
from edgefleet.server.errors import InvalidInputError
from edgefleet.shared.manifest import Baseline

MAX_BUCKETS = 2000


@dataclass(frozen=True, slots=True)
class WindowPoint:
    """One judged window, as stored (``counts`` is the sketch: features by name, and output)."""

    device: str
    version: int
    window_end: float
    count: int
    score: float | None
    flagged: bool
    confidence_change: float | None
    counts: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class VersionReference:
    """What a version's pooled windows are judged against."""

    baseline: Baseline
    reference_size: int | None
    """Training samples behind the baseline (None: not recorded)."""


@dataclass(frozen=True, slots=True)
class PooledDrift:
    """The windows of one version in one bucket, judged as one window of ``count`` inferences."""

    version: int
    windows: int
    devices: int
    count: int
    features: tuple[FeatureDrift, ...]
    output_psi: float | None
    score: float | None
    """None: fewer inferences than the statistics judge."""
    flagged: bool


@dataclass(frozen=True, slots=True)
class Bucket:
    start: float
    end: float
    windows: int
    devices: int
    flagged_windows: int
    flagged_devices: int
    mean_score: float | None
    max_score: float | None
    mean_confidence_change: float | None
    pooled: tuple[PooledDrift, ...]
    """Per version, when the series pools (group and fleet); empty otherwise."""


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _sketches(
    windows: Sequence[WindowPoint], baseline: Baseline
) -> tuple[list[list[Sequence[int]]], bool]:
    """Each window's counts in the baseline's feature order; the output's last when all have it."""
    names = [bins.name for bins in baseline.features]
    with_output = baseline.output is not None and all(
        w.counts.get("output") is not None for w in windows
    )
    sketches = []
    for window in windows:
        features = window.counts.get("features") or {}
        missing = [name for name in names if name not in features]
        if missing or len(features) != len(names):
            raise SketchMismatch(
                f"a window of v{window.version} from {window.device} has features "
                f"{sorted(features)}, its baseline {names}"
            )
        sketch = [features[name] for name in names]
        if with_output:
            sketch.append(window.counts["output"])
        sketches.append(sketch)
    return sketches, with_output


def pooled_drift(
    version: int,
    windows: Sequence[WindowPoint],
    reference: VersionReference,
    calibration: Calibration,
) -> PooledDrift:
    """``windows`` (all of ``version``) summed and judged as one window."""
    baseline = reference.baseline
    sketches, with_output = _sketches(windows, baseline)
    summed = pool(sketches)
    features = summed[: len(baseline.features)]
    output = None
    if with_output and baseline.output is not None:
        output = (baseline.output.name, summed[-1])
    count = sum(w.count for w in windows)
    thresholds = calibration.thresholds(
        baseline, baseline, count, reference_size=reference.reference_size
    )
    judged = judge(
        baseline,
        [(bins.name, counts) for bins, counts in zip(baseline.features, features, strict=True)],
        output,
        thresholds,
    )
    return PooledDrift(
        version=version,
        windows=len(windows),
        devices=len({w.device for w in windows}),
        count=count,
        features=judged.features,
        output_psi=judged.output_psi,
        score=judged.score,
        flagged=judged.flagged,
    )


def bucket_count(since: float, until: float, bucket_seconds: float) -> int:
    if not (math.isfinite(since) and math.isfinite(until) and until > since):
        raise InvalidInputError(f"want since < until, got {since} and {until}")
    if not (math.isfinite(bucket_seconds) and bucket_seconds > 0):
        raise InvalidInputError(f"a bucket lasts more than 0 seconds, got {bucket_seconds}")
    count = math.ceil((until - since) / bucket_seconds)
    if count > MAX_BUCKETS:
        raise InvalidInputError(
            f"{count} buckets of {bucket_seconds:g} s from {since:g} to {until:g}; at most "
            f"{MAX_BUCKETS}: take longer buckets or a shorter span",
            reason="too_many_buckets",
        )
    return count


def _bucket(
    start: float,
    end: float,
    windows: Sequence[WindowPoint],
    references: Mapping[int, VersionReference] | None,
    calibration: Calibration,
) -> Bucket:
    scores = [w.score for w in windows if w.score is not None]
    changes = [w.confidence_change for w in windows if w.confidence_change is not None]
    pooled: list[PooledDrift] = []
    if references is not None:
        for version in sorted({w.version for w in windows}):
            reference = references.get(version)
            if reference is not None:
                members = [w for w in windows if w.version == version]
                pooled.append(pooled_drift(version, members, reference, calibration))
    return Bucket(
        start=start,
        end=end,
        windows=len(windows),
        devices=len({w.device for w in windows}),
        flagged_windows=sum(w.flagged for w in windows),
        flagged_devices=len({w.device for w in windows if w.flagged}),
        mean_score=_mean(scores),
        max_score=max(scores, default=None),
        mean_confidence_change=_mean(changes),
        pooled=tuple(pooled),
    )


def series(
    windows: Sequence[WindowPoint],
    *,
    since: float,
    until: float,
    bucket_seconds: float,
    references: Mapping[int, VersionReference] | None,
    calibration: Calibration,
) -> tuple[Bucket, ...]:
    """Every bucket from ``since`` to ``until`` (empty ones too, so a chart has no gaps).

    A window belongs to the bucket its end falls in; windows ending outside
    ``[since, until)`` are left out. With ``references`` (version -> baseline)
    each bucket also pools its windows per version; versions without a
    baseline are not pooled.
    """
    count = bucket_count(since, until, bucket_seconds)
    members: list[list[WindowPoint]] = [[] for _ in range(count)]
    for window in windows:
        if since <= window.window_end < until:
            members[min(int((window.window_end - since) // bucket_seconds), count - 1)].append(
                window
            )
    return tuple(
        _bucket(
            since + i * bucket_seconds,
            min(since + (i + 1) * bucket_seconds, until),
            found,
            references,
            calibration,
        )
        for i, found in enumerate(members)
    )
