"""Bodies of the dataset and training routes (same families as :mod:`.schemas`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgefleet.server.api.schemas import ShortText, Strict
from edgefleet.server.db.models import DatasetVersion, JobState, KerasSource, TrainingJob

Sha256Text = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class DatasetVersionPublic(BaseModel):
    dataset: str
    version: int
    sha256: str
    size: int
    samples: int
    sample_schema: dict[str, Any] = Field(description="kind, shape, feature names, label names")
    split: dict[str, Any]
    source: dict[str, Any]
    created_at: float
    created_by: str
    created: bool = Field(True, description="false when the import matched the newest version")

    @classmethod
    def of(cls, version: DatasetVersion, *, created: bool = True) -> DatasetVersionPublic:
        return cls(
            dataset=version.dataset.name,
            version=version.version,
            sha256=version.sha256,
            size=version.size,
            samples=version.samples,
            sample_schema=version.sample_schema,
            split=version.split,
            source=version.source,
            created_at=version.created_at,
            created_by=version.created_by,
            created=created,
        )


class DatasetPublic(BaseModel):
    name: str
    description: str
    created_at: float
    versions: list[DatasetVersionPublic]


class RecipePublic(BaseModel):
    name: str
    task: str
    kinds: list[str]
    description: str
    defaults: dict[str, Any]
    search_space: dict[str, list[Any]]


class KerasSourcePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sha256: str
    size: int
    filename: str
    keras_version: str
    input_shape: list[int] | None
    created_at: float
    created_by: str

    @classmethod
    def of(cls, source: KerasSource) -> KerasSourcePublic:
        return cls.model_validate(source)


class JobCreate(Strict):
    model: ShortText = Field(description="the model the result registers a version of")
    dataset: ShortText
    dataset_version: int | None = Field(None, ge=1, description="default: the newest")
    recipe: ShortText | None = Field(None, description="mlp, cnn1d, cnn2d or autoencoder")
    keras_sha256: Sha256Text | None = Field(None, description="an uploaded .keras instead")
    params: dict[ShortText, Any] = Field(default_factory=dict, max_length=32)
    search_space: dict[ShortText, list[Any]] | None = Field(None, max_length=16)
    trials: int = Field(1, ge=1, le=32)
    strategy: Literal["grid", "random"] = "random"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    profiles: list[ShortText] = Field(default_factory=list, max_length=64)
    budget_points: float | None = Field(None, ge=0, le=100)
    metric: Literal["accuracy", "f1"] = "accuracy"


class JobPublic(BaseModel):
    id: int
    state: JobState
    model: str
    dataset: str
    dataset_version: int
    recipe: str | None
    keras_sha256: str | None
    request: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    claimed_by: str | None = Field(description="the host whose runner runs it")
    model_version: int | None
    created_at: float
    created_by: str
    started_at: float | None
    finished_at: float | None

    @classmethod
    def of(cls, job: TrainingJob) -> JobPublic:
        return cls(
            id=job.id,
            state=JobState(job.state),
            model=job.model_name,
            dataset=job.dataset_version.dataset.name,
            dataset_version=job.dataset_version.version,
            recipe=job.recipe,
            keras_sha256=None if job.keras_source is None else job.keras_source.sha256,
            request=job.request,
            progress=job.progress,
            result=job.result,
            error=job.error,
            cancel_requested=job.cancel_requested,
            claimed_by=job.claimed_by,
            model_version=job.model_version,
            created_at=job.created_at,
            created_by=job.created_by,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobLogPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: float
    message: str
