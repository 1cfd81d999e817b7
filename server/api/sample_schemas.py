"""Bodies of the edge-sample and drift routes (same families as :mod:`.schemas`).

The drift read side's snapshots (:class:`~edgefleet.server.drift.series.DriftStatus`,
:class:`~edgefleet.server.drift.series.DriftSeries`) are served as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgefleet.server.api.schemas import ShortText, Strict
from edgefleet.server.api.training_schemas import DatasetVersionPublic
from edgefleet.server.db.models import EdgeSample
from edgefleet.server.sample_files import MAX_LABEL_LENGTH
from edgefleet.server.samples import MAX_FOLD, MAX_LABELS

LabelText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH)]


class SamplePublic(BaseModel):
    id: int
    device_id: str
    sample_id: str = Field(description="the device's own id for it")
    model: str
    version: int
    window_seq: int
    reason: str = Field(description="reservoir or low_confidence")
    confidence: float | None
    label: str | None
    labelled_at: float | None
    labelled_by: str | None
    folded_into: str | None = Field(description="dataset:version that took it for training")
    received_at: float
    size: int = Field(description="number of values (float32)")

    @classmethod
    def of(cls, sample: EdgeSample) -> SamplePublic:
        return cls(
            id=sample.id,
            device_id=sample.device_id,
            sample_id=sample.sample_id,
            model=sample.model,
            version=sample.version,
            window_seq=sample.window_seq,
            reason=sample.reason,
            confidence=sample.confidence,
            label=sample.label,
            labelled_at=sample.labelled_at,
            labelled_by=sample.labelled_by,
            folded_into=sample.folded_into,
            received_at=sample.received_at,
            size=len(sample.values) // 4,
        )


class SampleDetail(SamplePublic):
    values: list[float] = Field(description="the model input, flattened")
    shape: list[int] | None = Field(description="the input's shape, when its version's is known")

    @classmethod
    def of_values(cls, sample: EdgeSample, shape: tuple[int, ...] | None) -> SampleDetail:
        values = np.frombuffer(sample.values, dtype="<f4").tolist()
        return cls(
            **SamplePublic.of(sample).model_dump(),
            values=values,
            shape=None if shape is None else list(shape),
        )


class _Keyed(Protocol):
    @property
    def id(self) -> int: ...


def next_after(found: Sequence[_Keyed], limit: int) -> int | None:
    """Where the next page starts: after the last id of a full page; None after a short one."""
    return found[-1].id if found and len(found) == limit else None


class SamplePage(BaseModel):
    items: list[SamplePublic]
    next_after_id: int | None = Field(
        description="pass as after_id for the next page; null on the last page"
    )


class LabelItem(Strict):
    id: Annotated[int, Field(ge=1)]
    label: LabelText


class LabelsCreate(Strict):
    labels: list[LabelItem] = Field(min_length=1, max_length=MAX_LABELS)


class LabelsResult(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    labelled: int = Field(description="samples that had no label")
    relabelled: int = Field(description="samples whose label changed")
    unchanged: int = Field(description="samples that had this label already")
    first_id: int
    last_id: int


class FoldCreate(Strict):
    model: ShortText
    dataset: ShortText
    ids: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        max_length=MAX_FOLD,
        description="exactly these samples; default: the model's labelled, unfolded ones",
    )


class FoldResult(BaseModel):
    dataset: DatasetVersionPublic
    folded: list[int]


class DriftWindowPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: str
    seq: int
    model: str
    version: int
    window_start: float
    window_end: float
    count: int = Field(description="inferences in the window")
    score: float | None = Field(description="largest statistic over its limit; > 1 is flagged")
    flagged: bool
    max_psi: float | None
    max_ks: float | None
    output_psi: float | None
    mean_confidence: float | None
    confidence_change: float | None
    statistics: dict[str, Any]
    counts: dict[str, Any]
    samples: int
    received_at: float


class WindowPage(BaseModel):
    items: list[DriftWindowPublic]
    next_after_id: int | None
