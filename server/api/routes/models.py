from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from edgefleet.server import registry
from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.schemas import (
    ArtifactPublic,
    ModelCreate,
    ModelPublic,
    VersionPublic,
    VersionUpdate,
)
from edgefleet.server.db.models import Artifact, Model, ModelVersion, VersionStage
from edgefleet.server.errors import InvalidInputError, NotFoundError

router = APIRouter(prefix="/models", tags=["models"])


def _model(model: Model) -> ModelPublic:
    numbers = [v.version for v in model.versions]
    return ModelPublic(
        name=model.name,
        description=model.description,
        created_at=model.created_at,
        versions=numbers,
        latest=max(numbers) if numbers else None,
    )


def _version(version: ModelVersion) -> VersionPublic:
    return VersionPublic(
        model=version.model.name,
        version=version.version,
        stage=VersionStage(version.stage),
        metrics=version.metrics,
        dataset_hash=version.dataset_hash,
        training_run=version.training_run,
        quantization=version.quantization,
        code_version=version.code_version,
        created_at=version.created_at,
        created_by=version.created_by,
        artifacts=[ArtifactPublic.model_validate(a) for a in version.artifacts],
    )


def _json_object(field: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{field}: not JSON ({err.msg})") from err
    if not isinstance(value, dict):
        raise InvalidInputError(f"{field}: want a JSON object")
    return value


@router.get("", response_model=list[ModelPublic])
def list_models(session: SessionDep, _: Viewer) -> list[ModelPublic]:
    return [_model(m) for m in registry.list_models(session=session)]


@router.post("", response_model=ModelPublic, status_code=status.HTTP_201_CREATED)
def create_model(
    body: ModelCreate, session: SessionDep, services: ServicesDep, principal: Operator
) -> ModelPublic:
    return _model(
        registry.create_model(
            session=session,
            name=body.name,
            description=body.description,
            actor=principal.name,
            now=services.clock(),
        )
    )


@router.get("/{name}", response_model=ModelPublic)
def show_model(name: str, session: SessionDep, _: Viewer) -> ModelPublic:
    return _model(registry.get_model(session=session, name=name))


@router.post("/{name}/versions", response_model=VersionPublic, status_code=status.HTTP_201_CREATED)
def upload_version(
    name: str,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    file: Annotated[UploadFile, File(description="the .tflite model")],
    profiles: Annotated[str, Form(max_length=1000, description="comma-separated profiles")],
    variant: Annotated[str, Form(max_length=32)],
    metrics: Annotated[str, Form(max_length=20_000)] = "{}",
    quantization: Annotated[str, Form(max_length=20_000)] = "{}",
    dataset_hash: Annotated[str | None, Form(max_length=64)] = None,
    training_run: Annotated[str | None, Form(max_length=128)] = None,
    code_version: Annotated[str | None, Form(max_length=64)] = None,
) -> VersionPublic:
    data = file.file.read()
    uploads = [
        registry.ArtifactUpload(hardware_profile=p.strip(), variant=variant, data=data)
        for p in profiles.split(",")
        if p.strip()
    ]
    spec = registry.VersionSpec(
        metrics=_json_object("metrics", metrics),
        quantization=_json_object("quantization", quantization),
        dataset_hash=dataset_hash,
        training_run=training_run,
        code_version=code_version,
    )
    version = registry.add_version(
        session=session,
        model_name=name,
        uploads=uploads,
        spec=spec,
        store=services.artifacts,
        signing=services.signing,
        catalog=services.catalog,
        actor=principal.name,
        now=services.clock(),
    )
    return _version(version)


@router.get("/{name}/versions/{version}", response_model=VersionPublic)
def show_version(name: str, version: int, session: SessionDep, _: Viewer) -> VersionPublic:
    return _version(registry.get_version(session=session, name=name, version=version))


@router.patch("/{name}/versions/{version}", response_model=VersionPublic)
def update_version(
    name: str,
    version: int,
    body: VersionUpdate,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
) -> VersionPublic:
    return _version(
        registry.set_stage(
            session=session,
            name=name,
            version=version,
            stage=body.stage,
            actor=principal.name,
            now=services.clock(),
        )
    )


def _artifact(session: SessionDep, name: str, version: int, profile: str) -> Artifact:
    found = registry.get_version(session=session, name=name, version=version)
    for artifact in found.artifacts:
        if artifact.hardware_profile == profile:
            return artifact
    raise NotFoundError(f"{name} v{version} has no artifact for profile {profile[:63]!r}")


@router.get("/{name}/versions/{version}/artifacts/{profile}/manifest")
def artifact_manifest(
    name: str, version: int, profile: str, session: SessionDep, _: Viewer
) -> dict[str, Any]:
    """The signed manifest envelope exactly as devices receive it."""
    return _artifact(session, name, version, profile).manifest


@router.get("/{name}/versions/{version}/artifacts/{profile}/download")
def artifact_download(
    name: str,
    version: int,
    profile: str,
    session: SessionDep,
    services: ServicesDep,
    _: Viewer,
) -> Response:
    artifact = _artifact(session, name, version, profile)
    return Response(
        services.artifacts.read(artifact.sha256),
        media_type="application/octet-stream",
        headers={"X-Content-SHA256": artifact.sha256},
    )
