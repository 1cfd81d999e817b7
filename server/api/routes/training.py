from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile, status

from edgefleet.server import registry
from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.training_schemas import (
    JobCreate,
    JobLogPublic,
    JobPublic,
    KerasSourcePublic,
    RecipePublic,
)
from edgefleet.server.db.models import JobState
from edgefleet.server.training import jobs, keras_sources
from edgefleet.server.training.compare import compare_versions
from edgefleet.server.training.recipe_specs import RECIPES
from edgefleet.server.training.runner import JobRunner
from edgefleet.server.training.scoring import Metric
from edgefleet.server.training.search import Strategy

router = APIRouter(prefix="/training", tags=["training"])
compare_router = APIRouter(prefix="/models", tags=["models"])


def _wake(request: Request) -> None:
    """Tell this server's runner (if it runs one) that the queue changed."""
    runner: JobRunner | None = getattr(request.app.state, "training", None)
    if runner is not None:
        runner.wake()


@router.get("/recipes", response_model=list[RecipePublic])
def list_recipes(_: Viewer) -> list[RecipePublic]:
    return [
        RecipePublic(
            name=info.name.value,
            task=info.task.value,
            kinds=sorted(k.value for k in info.kinds),
            description=info.description,
            defaults=dict(info.defaults),
            search_space={k: list(v) for k, v in info.search_space.items()},
        )
        for info in RECIPES.values()
    ]


@router.post("/jobs", response_model=JobPublic, status_code=status.HTTP_201_CREATED)
def create_job(
    body: JobCreate,
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
) -> JobPublic:
    spec = jobs.JobSpec(
        model=body.model,
        dataset=body.dataset,
        dataset_version=body.dataset_version,
        recipe=body.recipe,
        keras_sha256=body.keras_sha256,
        params=body.params,
        search_space=body.search_space,
        trials=body.trials,
        strategy=Strategy(body.strategy),
        seed=body.seed,
        profiles=tuple(body.profiles),
        budget_points=body.budget_points,
        metric=Metric(body.metric),
    )
    job = jobs.create_job(
        session=session,
        spec=spec,
        catalog=services.catalog,
        default_budget=services.settings.quantization_budget_points,
        actor=principal.name,
        now=services.clock(),
    )
    _wake(request)
    return JobPublic.of(job)


@router.get("/jobs", response_model=list[JobPublic])
def list_jobs(
    session: SessionDep,
    _: Viewer,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobPublic]:
    found = jobs.list_jobs(session=session, state=state, limit=limit, offset=offset)
    return [JobPublic.of(j) for j in found]


@router.get("/jobs/{job_id}", response_model=JobPublic)
def show_job(job_id: int, session: SessionDep, _: Viewer) -> JobPublic:
    return JobPublic.of(jobs.get_job(session=session, job_id=job_id))


@router.get("/jobs/{job_id}/logs", response_model=list[JobLogPublic])
def job_logs(
    job_id: int,
    session: SessionDep,
    _: Viewer,
    after: Annotated[int, Query(ge=0, description="only lines after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[JobLogPublic]:
    found = jobs.logs(session=session, job_id=job_id, after=after, limit=limit)
    return [JobLogPublic.model_validate(line) for line in found]


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(
    job_id: int, request: Request, session: SessionDep, services: ServicesDep, principal: Operator
) -> JobPublic:
    job = jobs.cancel_job(
        session=session, job_id=job_id, actor=principal.name, now=services.clock()
    )
    _wake(request)
    return JobPublic.of(job)


@router.post("/keras", response_model=KerasSourcePublic, status_code=status.HTTP_201_CREATED)
def upload_keras(
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    file: Annotated[UploadFile, File(description="a Keras 3 .keras file")],
) -> KerasSourcePublic:
    limit = services.settings.upload_max_bytes
    source = keras_sources.add_source(
        session=session,
        store=services.artifacts,
        data=file.file.read(limit + 1),
        filename=file.filename or "model.keras",
        max_bytes=limit,
        actor=principal.name,
        now=services.clock(),
    )
    return KerasSourcePublic.of(source)


@router.get("/keras", response_model=list[KerasSourcePublic])
def list_keras(session: SessionDep, _: Viewer) -> list[KerasSourcePublic]:
    return [KerasSourcePublic.of(s) for s in keras_sources.list_sources(session=session)]


@compare_router.get("/{name}/compare")
def compare(
    name: str,
    session: SessionDep,
    _: Viewer,
    a: Annotated[int, Query(ge=1, description="one version")],
    b: Annotated[int, Query(ge=1, description="the other")],
) -> dict[str, Any]:
    """Two versions side by side: lineage, metrics per variant, what each profile gets."""
    return compare_versions(
        registry.get_version(session=session, name=name, version=a),
        registry.get_version(session=session, name=name, version=b),
    )
