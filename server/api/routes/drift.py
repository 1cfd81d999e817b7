from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.server.api.deps import ServicesDep, SessionDep, Viewer
from edgefleet.server.api.sample_schemas import DriftWindowPublic, WindowPage, next_after
from edgefleet.server.drift import series
from edgefleet.server.drift.series import DriftSeries, DriftStatus, Scope

router = APIRouter(prefix="/drift", tags=["drift"])

DAY = 86_400.0
HOUR = 3_600.0

Model = Annotated[str, Query(min_length=1, max_length=63)]


@router.get("/status", response_model=DriftStatus)
def drift_status(session: SessionDep, _: Viewer, model: Model) -> DriftStatus:
    """Each device's latest window of the model (flagged first) and how many are flagged."""
    return series.drift_status(session, model=model)


@router.get("/series", response_model=DriftSeries)
def drift_series(
    session: SessionDep,
    services: ServicesDep,
    _: Viewer,
    model: Model,
    scope: Scope = Scope.FLEET,
    name: Annotated[
        str | None, Query(max_length=63, description="the device or group; none for the fleet")
    ] = None,
    since: Annotated[float | None, Query(description="default: a day before until")] = None,
    until: Annotated[float | None, Query(description="default: now")] = None,
    bucket: Annotated[float, Query(gt=0, description="seconds per bucket")] = HOUR,
) -> DriftSeries:
    """Windows per time bucket; for a group or the fleet also their pooled drift per version."""
    end = services.clock() if until is None else until
    return series.drift_series(
        session,
        model=model,
        scope=scope,
        name=name,
        since=end - DAY if since is None else since,
        until=end,
        bucket_seconds=bucket,
    )


@router.get("/windows", response_model=WindowPage)
def drift_windows(
    session: SessionDep,
    _: Viewer,
    model: Model,
    device: Annotated[str | None, Query(max_length=63)] = None,
    flagged: bool | None = None,
    since: float | None = None,
    until: float | None = None,
    after_id: Annotated[int, Query(ge=0, description="the last id of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=series.MAX_LIST)] = 100,
) -> WindowPage:
    """Judged windows with their statistics and counts, in the order they arrived."""
    found = series.list_windows(
        session,
        model=model,
        device=device,
        flagged=flagged,
        since=since,
        until=until,
        after_id=after_id,
        limit=limit,
    )
    items = [DriftWindowPublic.model_validate(w) for w in found]
    return WindowPage(items=items, next_after_id=next_after(found, limit))
