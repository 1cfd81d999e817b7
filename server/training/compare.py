"""Two model versions side by side: lineage, metrics, and per profile what each ships.

Pure over the versions' stored fields; numbers that both versions have are
also given as differences (``b - a``, and ``b / a`` for artifact sizes).
Versions from training jobs carry per-variant metrics; uploaded ones carry
whatever flat metrics their uploader gave, and only those are compared.
"""

from __future__ import annotations

from typing import Any

from edgefleet.server.db.models import ModelVersion


def _numbers(mapping: Any) -> dict[str, float]:
    if not isinstance(mapping, dict):
        return {}
    return {
        k: float(v)
        for k, v in mapping.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _side(version: ModelVersion) -> dict[str, Any]:
    variants = version.metrics.get("variants", {}) if isinstance(version.metrics, dict) else {}
    artifacts = {}
    for artifact in version.artifacts:
        found: dict[str, Any] = next(
            (v for v in variants.values() if v.get("sha256") == artifact.sha256), {}
        )
        artifacts[artifact.hardware_profile] = {
            "variant": artifact.variant,
            "size": artifact.size,
            "sha256": artifact.sha256,
            "metrics": found.get("metrics"),
            "latency_ms": found.get("latency_ms"),
        }
    return {
        "version": version.version,
        "stage": version.stage,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "dataset_hash": version.dataset_hash,
        "training_run": version.training_run,
        "code_version": version.code_version,
        "metrics": version.metrics,
        "artifacts": artifacts,
    }


def _deltas(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in sorted(a.keys() & b.keys())}


def compare_versions(a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    left, right = _side(a), _side(b)
    float_a = _numbers(a.metrics.get("float")) or _numbers(a.metrics)
    float_b = _numbers(b.metrics.get("float")) or _numbers(b.metrics)
    profiles = {}
    for profile in sorted(left["artifacts"].keys() | right["artifacts"].keys()):
        one, two = left["artifacts"].get(profile), right["artifacts"].get(profile)
        entry: dict[str, Any] = {
            "a": None if one is None else one["variant"],
            "b": None if two is None else two["variant"],
        }
        if one is not None and two is not None:
            entry["size_ratio"] = two["size"] / one["size"]
            entry["metrics"] = _deltas(_numbers(one["metrics"]), _numbers(two["metrics"]))
        profiles[profile] = entry
    return {
        "model": a.model.name,
        "a": left,
        "b": right,
        "differences": {
            "same_dataset": a.dataset_hash is not None and a.dataset_hash == b.dataset_hash,
            "metrics": _deltas(float_a, float_b),
            "profiles": profiles,
        },
    }
