"""The tables, as SQLAlchemy 2 typed declarative models.

Times are float seconds since the epoch (UTC) everywhere, the same unit the
MQTT messages carry, so telemetry windows need no conversion and both SQLite
and PostgreSQL compare them natively. Schema changes go through a new Alembic
revision in ``migrations/versions``; a test checks models and migrations agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from edgefleet.server.states import DeviceState

NAME = 63
"""Length of device ids, model names, profiles (the shared id alphabet)."""

Json = JSON().with_variant(JSONB(), "postgresql")
Id64 = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit keys on PostgreSQL; SQLite only autoincrements a plain INTEGER PRIMARY KEY."""


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json}


class GroupKind(StrEnum):
    STATIC = "static"
    SELECTOR = "selector"


class VersionStage(StrEnum):
    CANDIDATE = "candidate"
    APPROVED = "approved"
    DEPRECATED = "deprecated"


class RolloutState(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    """Started, waiting for its maintenance window."""
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"


ACTIVE_ROLLOUT_STATES = (RolloutState.SCHEDULED, RolloutState.RUNNING, RolloutState.PAUSED)


class WaveState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    """Devices notified; waiting for the success threshold."""
    SOAKING = "soaking"
    AWAITING_APPROVAL = "awaiting_approval"
    DONE = "done"
    BREACHED = "breached"


class Role(StrEnum):
    """API token roles; each includes the rights of the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    profile: Mapped[str] = mapped_column(String(NAME), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=DeviceState.PROVISIONED)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float | None] = mapped_column(Float)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    running: Mapped[list[Any]] = mapped_column(default=list)
    """Model slots from the device's last retained state message."""
    revoked_at: Mapped[float | None] = mapped_column(Float)


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    selector: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[float] = mapped_column(Float)
    members: Mapped[list[GroupMember]] = relationship(
        cascade="all, delete-orphan", order_by="GroupMember.device_id"
    )


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[float] = mapped_column(Float)
    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.version"
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16), default=VersionStage.CANDIDATE)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dataset_hash: Mapped[str | None] = mapped_column(String(64))
    training_run: Mapped[str | None] = mapped_column(String(128))
    quantization: Mapped[dict[str, Any]] = mapped_column(default=dict)
    code_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(NAME))
    model: Mapped[Model] = relationship(back_populates="versions")
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="version", cascade="all, delete-orphan", order_by="Artifact.hardware_profile"
    )


class Artifact(Base):
    """One variant of a version, built for one hardware profile, with its signed manifest."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("version_id", "hardware_profile"),)

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    hardware_profile: Mapped[str] = mapped_column(String(NAME))
    variant: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column()
    """The signed manifest envelope, exactly as devices receive it."""
    created_at: Mapped[float] = mapped_column(Float)
    version: Mapped[ModelVersion] = relationship(back_populates="artifacts")


class TelemetryRecord(Base):
    """One telemetry window of one device; ``(device_id, seq)`` makes redelivery harmless."""

    __tablename__ = "telemetry"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index("ix_telemetry_device_start", "device_id", "window_start"),
    )

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(NAME))
    seq: Mapped[int] = mapped_column(BigInteger)
    window_start: Mapped[float] = mapped_column(Float)
    window_end: Mapped[float] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(NAME))
    version: Mapped[int | None] = mapped_column(Integer)
    inferences: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    histograms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Latency and confidence histograms as sent, for gates that need the distribution."""
    received_at: Mapped[float] = mapped_column(Float)


class DeviceEvent(Base):
    __tablename__ = "device_events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index("ix_device_events_device_at", "device_id", "at"),
    )

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(NAME))
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[int] = mapped_column(Integer)
    rollout_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(500))
    progress: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    shadow_samples: Mapped[int | None] = mapped_column(BigInteger)
    shadow_agreement: Mapped[float | None] = mapped_column(Float)
    shadow_latency_delta_ms: Mapped[float | None] = mapped_column(Float)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored, the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float)


class AuditRecord(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(NAME), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()


class Dataset(Base):
    """A named dataset; its content lives in immutable, content-hashed versions."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[float] = mapped_column(Float)
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", order_by="DatasetVersion.version"
    )


class DatasetVersion(Base):
    """One immutable import: the canonical NPZ in the artifact store, named by ``sha256``."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[int] = mapped_column(BigInteger)
    sample_schema: Mapped[dict[str, Any]] = mapped_column()
    """Kind, shape, feature names and label names (``DatasetSchema``)."""
    split: Mapped[dict[str, Any]] = mapped_column()
    """Seed and fractions the train/validation/test split follows from, and its counts."""
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """How it was imported: format, file name, parser options, the version it extends."""
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(NAME))
    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class KerasSource(Base):
    """An uploaded ``.keras`` model, stored by content hash, waiting to be evaluated."""

    __tablename__ = "keras_sources"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    keras_version: Mapped[str] = mapped_column(String(32))
    input_shape: Mapped[list[Any] | None] = mapped_column()
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(NAME))


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrainingJob(Base):
    """A queued or finished training run; its lineage and per-variant metrics in ``result``."""

    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=JobState.QUEUED)
    model_name: Mapped[str] = mapped_column(String(NAME))
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    recipe: Mapped[str | None] = mapped_column(String(32))
    keras_source_id: Mapped[int | None] = mapped_column(ForeignKey("keras_sources.id"))
    request: Mapped[dict[str, Any]] = mapped_column()
    """Hyperparameters, search, seeds, split, profiles, budget: everything the run reads."""
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    """The host whose runner took the job; only its own restart fails the job as orphaned."""
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(NAME))
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    dataset_version: Mapped[DatasetVersion] = relationship()
    keras_source: Mapped[KerasSource | None] = relationship()


class TrainingJobLog(Base):
    __tablename__ = "training_job_logs"
    __table_args__ = (Index("ix_training_job_logs_job_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    at: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)


class Rollout(Base):
    """One version rolled out to one group in waves.

    ``active_key`` is ``"{group_id}:{model_id}"`` while the rollout is
    scheduled, running or paused and NULL otherwise: its unique index is what
    makes "one active rollout per group and model" hold under concurrent requests.
    """

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    group_name: Mapped[str] = mapped_column(String(NAME))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), index=True, default=RolloutState.DRAFT)
    active_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    current_wave: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(500))
    rollback_version: Mapped[int | None] = mapped_column(Integer)
    event_cursor: Mapped[int] = mapped_column(Id64, default=0)
    """Highest ``device_events.id`` already applied to the devices' states."""
    broker_down_since: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(NAME))
    updated_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    waves: Mapped[list[RolloutWave]] = relationship(
        cascade="all, delete-orphan", order_by="RolloutWave.index"
    )


class RolloutWave(Base):
    __tablename__ = "rollout_waves"

    rollout_id: Mapped[str] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(24), default=WaveState.PENDING)
    started_at: Mapped[float | None] = mapped_column(Float)
    soak_started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    gates: Mapped[list[Any]] = mapped_column(default=list)
    """The last evaluation's gate results, for the status view."""
    reason: Mapped[str | None] = mapped_column(String(500))
    approved_by: Mapped[str | None] = mapped_column(String(NAME))


class RolloutDevice(Base):
    """A device's part in a rollout; no foreign key to devices, so history outlives a device."""

    __tablename__ = "rollout_devices"
    __table_args__ = (Index("ix_rollout_devices_rollout_wave", "rollout_id", "wave"),)

    rollout_id: Mapped[str] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str] = mapped_column(String(NAME))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    previous_version: Mapped[int | None] = mapped_column(Integer)
    notified_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(String(500))


class DeviceDeployment(Base):
    """A model a device should run: what its retained ``desired`` message lists."""

    __tablename__ = "device_deployments"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    rollout_id: Mapped[str | None] = mapped_column(String(64))
    shadow: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[float] = mapped_column(Float)


class DesiredState(Base):
    """Revision of a device's desired message; ahead of ``published_revision`` until sent.

    A change is committed first and published after, so a broker outage only
    delays it: the next tick publishes whatever is still ahead.
    """

    __tablename__ = "desired_states"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(BigInteger)
    published_revision: Mapped[int] = mapped_column(BigInteger, default=0)
    published_at: Mapped[float | None] = mapped_column(Float)


class RetainedArtifact(Base):
    """Artifact chunks the broker holds as retained messages, so they can be cleared."""

    __tablename__ = "retained_artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[float] = mapped_column(Float)


class DriftWindow(Base):
    """One device's drift window, judged at ingest against its version's baseline.

    The raw counts stay next to the statistics: a group's or the fleet's drift
    is computed from the summed counts, and a change of calibration can be
    re-run over history.
    """

    __tablename__ = "drift_windows"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index("ix_drift_windows_device_end", "device_id", "window_end"),
        Index("ix_drift_windows_model_end", "model", "window_end"),
    )

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(NAME))
    seq: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[float] = mapped_column(Float)
    window_end: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float | None] = mapped_column(Float)
    """Largest statistic over its calibrated limit; above 1 is flagged. None: too few inferences."""
    flagged: Mapped[bool] = mapped_column(Boolean)
    max_psi: Mapped[float | None] = mapped_column(Float)
    max_ks: Mapped[float | None] = mapped_column(Float)
    output_psi: Mapped[float | None] = mapped_column(Float)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    confidence_change: Mapped[float | None] = mapped_column(Float)
    """Window mean confidence minus the version's mean confidence on its training data."""
    statistics: Mapped[dict[str, Any]] = mapped_column()
    """Per-feature PSI and KS and the limits the window was judged by."""
    counts: Mapped[dict[str, Any]] = mapped_column()
    """The sketch as sent: feature name -> counts, and the output's."""
    samples: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[float] = mapped_column(Float)


class EdgeSample(Base):
    """A raw input a device kept for retraining (a reservoir draw or a hard example).

    ``values`` are little-endian float32, the model input flattened; the
    shape is the version's input shape.
    """

    __tablename__ = "edge_samples"
    __table_args__ = (
        UniqueConstraint("device_id", "sample_id"),
        Index("ix_edge_samples_model_received", "model", "received_at"),
    )

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(NAME))
    sample_id: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[int] = mapped_column(Integer)
    window_seq: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    values: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str | None] = mapped_column(String(128))
    labelled_at: Mapped[float | None] = mapped_column(Float)
    labelled_by: Mapped[str | None] = mapped_column(String(NAME))
    folded_into: Mapped[str | None] = mapped_column(String(160))
    """``dataset:version`` that first took this sample for training (lineage)."""
    received_at: Mapped[float] = mapped_column(Float)


class RetrainingPolicyRecord(Base):
    """A model's retraining policy (JSON form of ``retraining.policy``) and its trigger clock."""

    __tablename__ = "retraining_policies"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    policy: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(NAME))
    last_triggered_at: Mapped[float | None] = mapped_column(Float)
    last_checked_at: Mapped[float | None] = mapped_column(Float)
    model: Mapped[Model] = relationship()


class RetrainingState(StrEnum):
    WAITING_FOR_LABELS = "waiting_for_labels"
    TRAINING = "training"
    FAILED = "failed"
    REJECTED = "rejected"
    AWAITING_APPROVAL = "awaiting_approval"
    DECLINED = "declined"
    PROMOTED = "promoted"


class RetrainingRun(Base):
    """One pass of the loop: trigger, dataset, challenger job, comparison, promotion."""

    __tablename__ = "retraining_runs"

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(NAME), index=True)
    state: Mapped[str] = mapped_column(String(24))
    active_key: Mapped[str | None] = mapped_column(String(NAME), unique=True)
    """The model's name while the run is unfinished: one run per model at a time."""
    trigger: Mapped[dict[str, Any]] = mapped_column()
    champion_version: Mapped[int | None] = mapped_column(Integer)
    dataset_name: Mapped[str | None] = mapped_column(String(NAME))
    dataset_version: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("training_jobs.id"))
    challenger_version: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[dict[str, Any] | None] = mapped_column()
    rollout_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


Index(
    "ix_telemetry_start_end_device",
    TelemetryRecord.window_start,
    TelemetryRecord.window_end,
    TelemetryRecord.device_id,
)
"""Covers the presence recount: one minute's devices are an index range scan, no row reads."""


class PresenceMinute(Base):
    """Distinct devices whose telemetry window overlapped the minute starting at ``start``."""

    __tablename__ = "presence_minutes"

    start: Mapped[float] = mapped_column(Float, primary_key=True, autoincrement=False)
    reporting: Mapped[int] = mapped_column(Integer)


class RollupMark(Base):
    """How far a roll-up has read a table: rows with ids up to ``last_id`` are counted."""

    __tablename__ = "rollup_marks"

    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    longest_window: Mapped[float] = mapped_column(Float)
    """Longest window rolled up so far, in seconds: how far back a recount looks."""
