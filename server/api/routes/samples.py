from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Response, UploadFile

from edgefleet.server import sample_files, samples
from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.sample_schemas import (
    FoldCreate,
    FoldResult,
    LabelsCreate,
    LabelsResult,
    SampleDetail,
    SamplePage,
    SamplePublic,
    next_after,
)
from edgefleet.server.api.training_schemas import DatasetVersionPublic
from edgefleet.server.errors import InvalidInputError
from edgefleet.shared.messages import SampleReason

router = APIRouter(prefix="/samples", tags=["samples"])

MAX_LABEL_CSV_BYTES = 4 * 1024 * 1024
"""Ten thousand ``id,label`` lines with labels of any allowed length fit easily."""

AfterId = Annotated[int, Query(ge=0, description="the last id of the previous page")]


class ExportFormat(StrEnum):
    CSV = "csv"
    NPZ = "npz"


def _where(
    model: Annotated[str, Query(min_length=1, max_length=63)],
    version: Annotated[int | None, Query(ge=1)] = None,
    device: Annotated[str | None, Query(max_length=63)] = None,
    labelled: bool | None = None,
    reason: SampleReason | None = None,
    since: Annotated[float | None, Query(description="received at or after")] = None,
) -> samples.SampleFilter:
    return samples.SampleFilter(model, version, device, labelled, reason, since)


Where = Annotated[samples.SampleFilter, Depends(_where)]


@router.get("", response_model=SamplePage)
def list_samples(
    session: SessionDep,
    _: Viewer,
    where: Where,
    after_id: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=samples.MAX_LIST)] = 100,
) -> SamplePage:
    """Oldest first, without their values; page with ``after_id``."""
    found = samples.list_samples(session, **asdict(where), after_id=after_id, limit=limit)
    return SamplePage(
        items=[SamplePublic.of(s) for s in found], next_after_id=next_after(found, limit)
    )


@router.get("/export")
def export_samples(
    session: SessionDep,
    _: Viewer,
    where: Where,
    format: ExportFormat = ExportFormat.CSV,  # noqa: A002 - the API's word
    after_id: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=samples.MAX_EXPORT)] = samples.MAX_EXPORT,
) -> Response:
    """Samples with their values as CSV or NPZ (``x``, ``ids``, ``labels``).

    A cut-off export says where to go on in its ``X-Next-After-Id`` header.
    """
    exported = samples.export(session, **asdict(where), after_id=after_id, limit=limit)
    if format is ExportFormat.CSV:
        body, media = sample_files.to_csv(exported).encode(), "text/csv; charset=utf-8"
    else:
        body, media = sample_files.to_npz(exported), "application/octet-stream"
    name = f"{where.model}-samples.{format.value}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    following = next_after(exported.rows, limit)
    if following is not None:
        headers["X-Next-After-Id"] = str(following)
    return Response(body, media_type=media, headers=headers)


@router.get("/{sample_id}", response_model=SampleDetail)
def show_sample(sample_id: int, session: SessionDep, _: Viewer) -> SampleDetail:
    found = samples.get_sample(session, sample_id)
    return SampleDetail.of_values(found, samples.input_shape(session, found.model, found.version))


@router.post("/labels", response_model=LabelsResult)
def label_samples(
    body: LabelsCreate, session: SessionDep, services: ServicesDep, principal: Operator
) -> LabelsResult:
    """Label every listed sample or, when any id or label is refused, none."""
    labels = sample_files.label_pairs((item.id, item.label) for item in body.labels)
    done = samples.apply_labels(session, labels, principal.name, services.clock())
    return LabelsResult.model_validate(done)


@router.post("/labels.csv", response_model=LabelsResult)
def label_samples_csv(
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    file: Annotated[UploadFile, File(description="a CSV with the header id,label")],
) -> LabelsResult:
    """The same as ``POST /samples/labels``, from an ``id,label`` CSV upload."""
    data = file.file.read(MAX_LABEL_CSV_BYTES + 1)
    if len(data) > MAX_LABEL_CSV_BYTES:
        raise InvalidInputError(
            f"a label CSV is at most {MAX_LABEL_CSV_BYTES} bytes", reason="too_large"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            f"the label CSV is not UTF-8 (byte {err.start})", reason="bad_label_csv"
        ) from err
    labels = sample_files.parse_label_csv(text)
    done = samples.apply_labels(session, labels, principal.name, services.clock())
    return LabelsResult.model_validate(done)


@router.post("/fold", response_model=FoldResult, status_code=201)
def fold_samples(
    body: FoldCreate, session: SessionDep, services: ServicesDep, principal: Operator
) -> FoldResult:
    """Labelled samples become a new version of a dataset (its newest version, extended)."""
    version, ids = samples.fold(
        session,
        services.artifacts,
        model=body.model,
        dataset=body.dataset,
        sample_ids=body.ids,
        actor=principal.name,
        now=services.clock(),
    )
    return FoldResult(dataset=DatasetVersionPublic.of(version), folded=list(ids))
