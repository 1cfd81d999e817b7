"""A drift message as rows: one judged window and its edge samples. Pure: no I/O, no clock.

The window is judged here, at ingest, once: the statistics never change
for a stored window, and every reader (the retraining trigger, the API, the
dashboard) then reads the same numbers. A message that does not fit its
version (bins or features other than the baseline's, samples of another
input size) is refused whole: storing its samples without its window, or a
window scored against the wrong bins, would be worse than nothing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgefleet.server.drift.statistics import Calibration, SketchMismatch, check_sketch, judge
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.ingest.references import Reference
from edgefleet.shared.messages import Drift


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _sketch(
    message: Drift,
) -> tuple[list[tuple[str, tuple[int, ...]]], tuple[str, tuple[int, ...]] | None]:
    features = [(f.name, f.counts) for f in message.features]
    output = None if message.output is None else (message.output.name, message.output.counts)
    return features, output


def drift_rows(
    device_id: str,
    message: Drift,
    reference: Reference,
    calibration: Calibration,
    *,
    received_at: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The window row and the sample rows; raises InvalidInputError when they do not fit."""
    features, output = _sketch(message)
    baseline = reference.baseline
    if baseline is None:
        if features or output is not None:
            raise SketchMismatch(
                f"{message.model} v{message.version} has no drift baseline, "
                "but the window carries sketches"
            )
    else:
        check_sketch(baseline, features, output)
    for sample in message.samples:
        if len(sample.values) != reference.input_size:
            raise InvalidInputError(
                f"sample {sample.sample_id} has {len(sample.values)} values; "
                f"{message.model} v{message.version} takes {reference.input_size}",
                reason="sample_mismatch",
            )
    judged = thresholds = None
    if baseline is not None:
        thresholds = calibration.thresholds(
            (message.model, message.version),
            baseline,
            message.count,
            reference_size=reference.reference_size,
        )
        judged = judge(baseline, features, output, thresholds)
    window = {
        "device_id": device_id,
        "seq": message.seq,
        "model": message.model,
        "version": message.version,
        "window_start": message.window_start,
        "window_end": message.window_end,
        "count": message.count,
        "score": None if judged is None else judged.score,
        "flagged": judged is not None and judged.flagged,
        "max_psi": max((f.psi for f in judged.features), default=None) if judged else None,
        "max_ks": max((f.ks for f in judged.features), default=None) if judged else None,
        "output_psi": None if judged is None else judged.output_psi,
        "mean_confidence": message.mean_confidence,
        "confidence_change": None
        if message.mean_confidence is None or reference.mean_confidence is None
        else message.mean_confidence - reference.mean_confidence,
        # Serialized here, once: the writer hands rows to the driver as they are.
        "statistics": _json(
            {
                "features": {f.name: {"psi": f.psi, "ks": f.ks} for f in judged.features}
                if judged
                else {},
                "thresholds": None
                if thresholds is None
                else {
                    "count": thresholds.count,
                    "psi": thresholds.psi,
                    "ks": thresholds.ks,
                    "output_psi": thresholds.output_psi,
                },
            }
        ),
        "counts": _json(
            {
                "features": {name: list(counts) for name, counts in features},
                "output": None if output is None else list(output[1]),
            }
        ),
        "samples": len(message.samples),
        "received_at": received_at,
    }
    samples = [
        {
            "device_id": device_id,
            "sample_id": sample.sample_id,
            "model": message.model,
            "version": message.version,
            "window_seq": message.seq,
            "reason": sample.reason.value,
            "confidence": sample.confidence,
            "values": np.asarray(sample.values, dtype="<f4").tobytes(),
            "label": None,
            "labelled_at": None,
            "labelled_by": None,
            "folded_into": None,
            "received_at": received_at,
        }
        for sample in message.samples
    ]
    return window, samples
