"""Request and response bodies: ``XCreate`` / ``XUpdate`` in, ``XPublic`` out.

Length caps here turn a 10,000-character name into a 422 before any service
runs; the services still validate meaning (alphabet, known profile).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgefleet.server.db.models import GroupKind, Role, VersionStage

T = TypeVar("T")

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=63)]
LabelValue = Annotated[str, StringConstraints(max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class DeviceCreate(Strict):
    id: ShortText
    profile: ShortText
    tags: list[ShortText] = Field(default_factory=list, max_length=64)
    labels: dict[ShortText, LabelValue] = Field(default_factory=dict, max_length=64)


class DeviceUpdate(Strict):
    tags: list[ShortText] | None = Field(default=None, max_length=64)
    labels: dict[ShortText, LabelValue] | None = Field(default=None, max_length=64)


class DevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    profile: str
    state: str
    tags: list[str]
    labels: dict[str, str]
    created_at: float
    updated_at: float
    last_seen_at: float | None
    agent_version: str | None
    running: list[dict[str, Any]]
    revoked_at: float | None


class DeviceBundle(BaseModel):
    device: DevicePublic
    agent_config: str = Field(
        description="agent.toml for the device; holds its broker "
        "password, shown only in this response"
    )


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: float
    actor: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    role: Role
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


class GroupCreate(Strict):
    name: ShortText
    kind: GroupKind
    selector: Annotated[str, StringConstraints(max_length=2000)] | None = None
    members: list[ShortText] = Field(default_factory=list, max_length=10_000)
    description: Annotated[str, StringConstraints(max_length=500)] = ""


class GroupMembersChange(Strict):
    add: list[ShortText] = Field(default_factory=list, max_length=10_000)
    remove: list[ShortText] = Field(default_factory=list, max_length=10_000)


class GroupPublic(BaseModel):
    name: str
    kind: GroupKind
    selector: str | None
    description: str
    created_at: float
    members: list[str]


class ModelCreate(Strict):
    name: ShortText
    description: Annotated[str, StringConstraints(max_length=500)] = ""


class ArtifactPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    hardware_profile: str
    variant: str
    sha256: str
    size: int
    created_at: float


class VersionPublic(BaseModel):
    model: str
    version: int
    stage: VersionStage
    metrics: dict[str, Any]
    dataset_hash: str | None
    training_run: str | None
    quantization: dict[str, Any]
    code_version: str | None
    created_at: float
    created_by: str
    artifacts: list[ArtifactPublic]


class VersionUpdate(Strict):
    stage: VersionStage


class ModelPublic(BaseModel):
    name: str
    description: str
    created_at: float
    versions: list[int]
    latest: int | None


class TelemetryBucketPublic(BaseModel):
    start: float
    windows: int
    inferences: int
    errors: int
    latency_p95_ms: float | None
    cpu_percent: float | None
    memory_bytes: int | None
    temperature_c: float | None


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: float
    kind: str
    model: str
    version: int
    rollout_id: str | None
    reason: str | None
    progress: float | None
    received_at: float


class TokenCreate(Strict):
    name: ShortText
    role: Role
    expires_at: float | None = None


class TokenCreated(BaseModel):
    token: TokenPublic
    secret: str = Field(description="the bearer token; shown only in this response")
