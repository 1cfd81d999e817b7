"""The model registry: models, monotonic versions, signed artifacts per hardware profile.

A version is immutable once created except for its stage; its artifacts
are stored by content hash and their manifests signed at creation, so what
a rollout ships is exactly what was registered.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.server import audit, tflite_model
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import Artifact, Model, ModelVersion, VersionStage
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.signing import SigningService
from edgefleet.shared import schema
from edgefleet.shared.errors import TopicError
from edgefleet.shared.manifest import ArtifactSpec, Baseline, Manifest, SelfTest
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.topics import validate_device_id

CHUNK_BYTES = 64 * 1024
"""Artifact chunk size on MQTT: small enough for any broker's packet limit."""
MANIFEST_VALIDITY_DAYS = 365


@dataclass(frozen=True, slots=True)
class ArtifactUpload:
    hardware_profile: str
    variant: str
    data: bytes
    self_test: SelfTest | None = None
    """Vectors computed on real inputs; default: drawn at random by the manifest builder."""


@dataclass(frozen=True, slots=True)
class VersionSpec:
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset_hash: str | None = None
    training_run: str | None = None
    quantization: dict[str, Any] = field(default_factory=dict)
    code_version: str | None = None
    baseline: Baseline | None = None


def _check_name(name: str) -> None:
    try:
        validate_device_id(name)
    except TopicError as err:
        raise InvalidInputError(f"invalid model name: {err}") from err


def get_model(*, session: Session, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFoundError(f"no model {name[:80]!r}")
    return model


def get_version(*, session: Session, name: str, version: int) -> ModelVersion:
    model = get_model(session=session, name=name)
    found = session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == version
        )
    )
    if found is None:
        raise NotFoundError(f"model {name!r} has no version {version}")
    return found


def list_models(*, session: Session) -> Sequence[Model]:
    return session.scalars(select(Model).order_by(Model.name)).all()


def create_model(*, session: Session, name: str, description: str, actor: str, now: float) -> Model:
    _check_name(name)
    if session.scalar(select(Model.id).where(Model.name == name)) is not None:
        raise ConflictError(f"model {name!r} exists")
    model = Model(name=name, description=description, created_at=now)
    session.add(model)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="model.create",
        target_type="model",
        target_id=name,
        now=now,
        after={"name": name, "description": description},
    )
    session.commit()
    return model


def version_snapshot(version: ModelVersion) -> dict[str, Any]:
    return {
        "model": version.model.name,
        "version": version.version,
        "stage": version.stage,
        "metrics": version.metrics,
        "dataset_hash": version.dataset_hash,
        "training_run": version.training_run,
        "code_version": version.code_version,
        "artifacts": {a.hardware_profile: a.sha256 for a in version.artifacts},
    }


def _artifact(
    *,
    model: str,
    version: int,
    upload: ArtifactUpload,
    spec: VersionSpec,
    store: ArtifactStore,
    signing: SigningService,
    catalog: ProfileCatalog,
    now: float,
) -> Artifact:
    profile = catalog.get(upload.hardware_profile)
    if upload.variant not in profile.variants:
        allowed = ", ".join(profile.variants)
        raise InvalidInputError(f"profile {profile.name!r} runs {allowed}, not {upload.variant!r}")
    if len(upload.data) > profile.max_artifact_bytes:
        raise InvalidInputError(
            f"{len(upload.data)} bytes is over the {profile.max_artifact_bytes}-byte limit of "
            f"profile {profile.name!r}"
        )
    sha256 = hashlib.sha256(upload.data).hexdigest()
    size = len(upload.data)
    artifact = ArtifactSpec(
        sha256=sha256, size=size, chunk_size=CHUNK_BYTES, chunk_count=-(-size // CHUNK_BYTES)
    )
    manifest = tflite_model.build_manifest(
        model=model,
        version=version,
        hardware_profile=profile.name,
        data=upload.data,
        artifact=artifact,
        now=int(now),
        validity_days=MANIFEST_VALIDITY_DAYS,
        baseline=spec.baseline,
        self_test=upload.self_test,
    )
    envelope = signing.sign_manifest(manifest)
    # Stored only once it is known to be a model devices will accept.
    ref = store.put(upload.data)
    return Artifact(
        hardware_profile=profile.name,
        variant=upload.variant,
        sha256=ref.sha256,
        size=ref.size,
        manifest=schema.to_json(envelope),
        created_at=now,
    )


def add_version(
    *,
    session: Session,
    model_name: str,
    uploads: Sequence[ArtifactUpload],
    spec: VersionSpec,
    store: ArtifactStore,
    signing: SigningService,
    catalog: ProfileCatalog,
    actor: str,
    now: float,
) -> ModelVersion:
    """Register the next version of ``model_name`` (created if new) with its artifacts."""
    if not uploads:
        raise InvalidInputError("a version needs at least one artifact")
    profiles = [u.hardware_profile for u in uploads]
    if len(set(profiles)) != len(profiles):
        raise InvalidInputError("one artifact per hardware profile")
    _check_name(model_name)
    model = session.scalar(select(Model).where(Model.name == model_name))
    if model is None:
        model = Model(name=model_name, description="", created_at=now)
        session.add(model)
        session.flush()
    number = _next_number(session, model)
    version = ModelVersion(
        model=model,
        version=number,
        stage=VersionStage.CANDIDATE,
        metrics=spec.metrics,
        dataset_hash=spec.dataset_hash,
        training_run=spec.training_run,
        quantization=spec.quantization,
        code_version=spec.code_version,
        created_at=now,
        created_by=actor,
        artifacts=[
            _artifact(
                model=model_name,
                version=number,
                upload=u,
                spec=spec,
                store=store,
                signing=signing,
                catalog=catalog,
                now=now,
            )
            for u in uploads
        ],
    )
    session.add(version)
    try:
        session.flush()
    except IntegrityError as err:
        session.rollback()
        raise ConflictError(
            f"model {model_name!r} version {number} was registered concurrently; retry"
        ) from err
    audit.record(
        session=session,
        actor=actor,
        action="version.create",
        target_type="model",
        target_id=f"{model_name}:{number}",
        now=now,
        after=version_snapshot(version),
    )
    session.commit()
    return version


def _next_number(session: Session, model: Model) -> int:
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
    )
    return (latest or 0) + 1


def reissue_version(
    *,
    session: Session,
    name: str,
    version: int,
    signing: SigningService,
    note: str,
    actor: str,
    now: float,
) -> ModelVersion:
    """A new, higher version carrying the bytes of ``version``: how a rollback is shipped.

    Devices refuse a lower version (anti-rollback), so going back means going
    forward to the old bytes under freshly signed manifests. It is approved
    already (its bytes were), and the caller commits it with the change that
    needs it. ``note`` says why, in the version's lineage.
    """
    source = get_version(session=session, name=name, version=version)
    number = _next_number(session, source.model)
    artifacts = []
    for artifact in source.artifacts:
        envelope = schema.from_json(SignedEnvelope, artifact.manifest)
        manifest = Manifest.from_signed(envelope.signed)
        fresh = dataclasses.replace(
            manifest,
            version=number,
            created_at=int(now),
            expires_at=int(now) + MANIFEST_VALIDITY_DAYS * 86_400,
        )
        artifacts.append(
            Artifact(
                hardware_profile=artifact.hardware_profile,
                variant=artifact.variant,
                sha256=artifact.sha256,
                size=artifact.size,
                manifest=schema.to_json(signing.sign_manifest(fresh)),
                created_at=now,
            )
        )
    reissued = ModelVersion(
        model=source.model,
        version=number,
        stage=VersionStage.APPROVED,
        metrics=source.metrics,
        dataset_hash=source.dataset_hash,
        training_run=note[:128],
        quantization=source.quantization,
        code_version=source.code_version,
        created_at=now,
        created_by=actor,
        artifacts=artifacts,
    )
    session.add(reissued)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="version.reissue",
        target_type="model",
        target_id=f"{name}:{number}",
        now=now,
        after={**version_snapshot(reissued), "bytes_of": version, "note": note},
    )
    return reissued


def set_stage(
    *, session: Session, name: str, version: int, stage: VersionStage, actor: str, now: float
) -> ModelVersion:
    found = get_version(session=session, name=name, version=version)
    before = version_snapshot(found)
    found.stage = stage.value
    audit.record(
        session=session,
        actor=actor,
        action="version.stage",
        target_type="model",
        target_id=f"{name}:{version}",
        now=now,
        before=before,
        after=version_snapshot(found),
    )
    session.commit()
    return found
