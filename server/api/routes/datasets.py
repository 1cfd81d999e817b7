from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.training_schemas import DatasetPublic, DatasetVersionPublic
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import dataset_registry
from edgefleet.server.training.datasets import SplitSpec
from edgefleet.server.training.imports import DataFormat, SyntheticSpec, read_samples
from edgefleet.server.training.parsing import CsvOptions
from edgefleet.shared import schema
from edgefleet.shared.errors import MessageError

router = APIRouter(prefix="/datasets", tags=["datasets"])

Column = Annotated[str | None, Form(max_length=128)]


def _format(given: DataFormat | None, filename: str | None) -> DataFormat:
    if given is not None:
        return given
    suffix = (filename or "").rsplit(".", 1)[-1].lower()
    if suffix in (DataFormat.CSV.value, DataFormat.NPZ.value):
        return DataFormat(suffix)
    raise InvalidInputError("say the format (csv, npz, demo, synthetic): the file name does not")


def _synthetic(text: str | None) -> SyntheticSpec | None:
    if text is None:
        return None
    try:
        return schema.from_json(SyntheticSpec, json.loads(text))
    except (json.JSONDecodeError, MessageError) as err:
        raise InvalidInputError(f"synthetic: {err}") from err


def _split(seed: int, validation: float, test: float) -> SplitSpec:
    try:
        return schema.from_json(SplitSpec, {"seed": seed, "validation": validation, "test": test})
    except MessageError as err:
        raise InvalidInputError(f"split: {err}") from err


@router.get("", response_model=list[DatasetPublic])
def list_datasets(session: SessionDep, _: Viewer) -> list[DatasetPublic]:
    return [
        DatasetPublic(
            name=d.name,
            description=d.description,
            created_at=d.created_at,
            versions=[DatasetVersionPublic.of(v) for v in d.versions],
        )
        for d in dataset_registry.list_datasets(session=session)
    ]


@router.get("/{name}", response_model=DatasetPublic)
def show_dataset(name: str, session: SessionDep, _: Viewer) -> DatasetPublic:
    found = dataset_registry.get_dataset(session=session, name=name)
    return DatasetPublic(
        name=found.name,
        description=found.description,
        created_at=found.created_at,
        versions=[DatasetVersionPublic.of(v) for v in found.versions],
    )


@router.get("/{name}/versions/{version}", response_model=DatasetVersionPublic)
def show_version(name: str, version: int, session: SessionDep, _: Viewer) -> DatasetVersionPublic:
    return DatasetVersionPublic.of(
        dataset_registry.get_version(session=session, name=name, version=version)
    )


@router.post(
    "/{name}/versions",
    response_model=DatasetVersionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "the content is the newest version already"}},
)
def import_version(
    name: str,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    file: Annotated[UploadFile | None, File(description="a .csv or .npz")] = None,
    format: Annotated[DataFormat | None, Form()] = None,  # noqa: A002 - the API's word
    label_column: Column = "label",
    unlabelled: Annotated[bool, Form(description="no label column (anomaly data)")] = False,
    feature_columns: Annotated[str | None, Form(max_length=20_000)] = None,
    series_column: Column = None,
    time_column: Column = None,
    window: Annotated[int | None, Form(ge=2, le=65_536)] = None,
    stride: Annotated[int | None, Form(ge=1, le=65_536)] = None,
    demo: Annotated[str | None, Form(max_length=40)] = None,
    synthetic: Annotated[str | None, Form(max_length=2000, description="JSON")] = None,
    split_seed: Annotated[int, Form(ge=0, le=2**32 - 1)] = 0,
    validation: Annotated[float, Form()] = 0.15,
    test: Annotated[float, Form()] = 0.15,
    extend: Annotated[bool, Form(description="append to the newest version")] = False,
) -> DatasetVersionPublic:
    limit = services.settings.upload_max_bytes
    data = None if file is None else file.file.read(limit + 1)
    options = CsvOptions(
        label_column=None if unlabelled else label_column,
        feature_columns=None
        if feature_columns is None
        else tuple(c.strip() for c in feature_columns.split(",") if c.strip()),
        series_column=series_column,
        time_column=time_column,
        window=window,
        stride=stride,
    )
    filename = None if file is None else file.filename
    samples, source = read_samples(
        _format(format, filename),
        data=data,
        filename=filename,
        csv=options,
        demo=demo,
        generator=_synthetic(synthetic),
        max_bytes=limit,
    )
    imported = dataset_registry.import_version(
        session=session,
        store=services.artifacts,
        name=name,
        samples=samples,
        split=_split(split_seed, validation, test),
        source=source,
        actor=principal.name,
        now=services.clock(),
        extend=extend,
    )
    if not imported.created:
        response.status_code = status.HTTP_200_OK
    return DatasetVersionPublic.of(imported.version, created=imported.created)
