from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from edgefleet.server import registry
from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.retraining_schemas import (
    POLICY_HELP,
    RetrainingDecline,
    RetrainingPolicyPublic,
    RetrainingRunPublic,
)
from edgefleet.server.db.models import RetrainingPolicyRecord
from edgefleet.server.errors import NotFoundError
from edgefleet.server.retraining import runs
from edgefleet.server.retraining.policy import policy_from_dict

MAX_RUNS = 500

policy_router = APIRouter(prefix="/models", tags=["retraining"])
router = APIRouter(prefix="/retraining", tags=["retraining"])


@policy_router.get("/{name}/retraining-policy", response_model=RetrainingPolicyPublic)
def show_policy(
    name: str, session: SessionDep, services: ServicesDep, _: Viewer
) -> RetrainingPolicyPublic:
    """The stored policy with its trigger clock: when it last fired and the next cron slot."""
    record = session.get(RetrainingPolicyRecord, registry.get_model(session=session, name=name).id)
    if record is None:
        raise NotFoundError(f"model {name!r} has no retraining policy")
    return RetrainingPolicyPublic.of(record, now=services.clock())


@policy_router.put("/{name}/retraining-policy", response_model=RetrainingPolicyPublic)
def set_policy(
    name: str,
    body: Annotated[dict[str, Any], Body(description=POLICY_HELP)],
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
) -> RetrainingPolicyPublic:
    """Replace the model's policy; its groups and dataset must exist."""
    now = services.clock()
    record = runs.set_policy(
        session=session, model=name, policy=policy_from_dict(body), actor=principal.name, now=now
    )
    return RetrainingPolicyPublic.of(record, now=now)


@policy_router.delete("/{name}/retraining-policy", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(
    name: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> Response:
    """Stop retraining the model; its runs stay on record."""
    runs.delete_policy(session=session, model=name, actor=principal.name, now=services.clock())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/runs", response_model=list[RetrainingRunPublic])
def list_runs(
    session: SessionDep,
    _: Viewer,
    model: str | None = None,
    before: Annotated[
        int | None, Query(ge=1, description="only runs with a smaller id: the last id of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = 50,
) -> list[RetrainingRunPublic]:
    """Newest first."""
    found = runs.list_runs(session=session, model=model, before_id=before, limit=limit)
    return [RetrainingRunPublic.of(r) for r in found]


@router.get("/runs/{run_id}", response_model=RetrainingRunPublic)
def show_run(run_id: int, session: SessionDep, _: Viewer) -> RetrainingRunPublic:
    return RetrainingRunPublic.of(runs.get_run(session=session, run_id=run_id))


@router.post("/runs/{run_id}/approve", response_model=RetrainingRunPublic)
def approve_run(
    run_id: int, session: SessionDep, services: ServicesDep, principal: Operator
) -> RetrainingRunPublic:
    """Open the challenger's staged rollout; a refused rollout fails the run, saying why."""
    run = runs.approve_run(
        session=session,
        run_id=run_id,
        alerts=services.alerts,
        metrics=services.metrics,
        actor=principal.name,
        now=services.clock(),
    )
    return RetrainingRunPublic.of(run)


@router.post("/runs/{run_id}/decline", response_model=RetrainingRunPublic)
def decline_run(
    run_id: int,
    body: RetrainingDecline,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
) -> RetrainingRunPublic:
    """Keep the champion; the model may trigger its next run."""
    run = runs.decline_run(
        session=session,
        run_id=run_id,
        reason=runs.check_reason(body.reason),
        alerts=services.alerts,
        metrics=services.metrics,
        actor=principal.name,
        now=services.clock(),
    )
    return RetrainingRunPublic.of(run)
