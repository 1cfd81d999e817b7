"""The training-job queue, in the database: create, list, cancel, and the state transitions.

::

    queued --claim--> running --finish--> succeeded | failed | cancelled
       \\--cancel--> cancelled

Every transition is a conditional ``UPDATE`` (``... WHERE state = 'running'``),
so two runners never claim one job and a late finish never overwrites a
cancellation. A job is checked as far as possible when it is created
(dataset, recipe against the dataset's samples, hyperparameters, profiles),
so most mistakes are a 422 at once instead of a failed job minutes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.db.models import JobState, ModelVersion, TrainingJob, TrainingJobLog
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.training import dataset_registry, keras_sources
from edgefleet.server.training.datasets import SplitSpec
from edgefleet.server.training.pipeline import DEFAULT_BUDGET_POINTS, TrainingRequest
from edgefleet.server.training.recipe_specs import recipe
from edgefleet.server.training.scoring import Metric
from edgefleet.server.training.search import MAX_TRIALS, Strategy
from edgefleet.shared import schema

MAX_LOG_CHARS = 4000
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def run_id(job_id: int) -> str:
    """The job's name in lineage (``ModelVersion.training_run``)."""
    return f"job-{job_id}"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What an operator asks for; validated by :func:`create_job`."""

    model: str
    dataset: str
    dataset_version: int | None = None
    recipe: str | None = None
    keras_sha256: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, list[Any]] | None = None
    trials: int = 1
    strategy: Strategy = Strategy.RANDOM
    seed: int = 0
    profiles: tuple[str, ...] = ()
    """Default: every known profile."""
    budget_points: float | None = None
    """Default: the server's setting."""
    metric: Metric = Metric.ACCURACY
    challenge: Challenge | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """A retraining job: the version it must beat, and how its data is weighted."""

    champion: int
    retraining_run: int
    edge_weight: int = 1
    baseline_sha256: str | None = None
    """Stored NPZ of recent device inputs the drift baseline is counted over."""


def _checked_request(
    session: Session, spec: JobSpec, catalog: ProfileCatalog, default_budget: float
) -> tuple[dict[str, Any], int, int | None]:
    """The stored request, the dataset version's row id and the Keras source's, all checked."""
    dataset_registry.check_name("model", spec.model)
    version = dataset_registry.get_version(
        session=session, name=spec.dataset, version=spec.dataset_version
    )
    sample_schema = dataset_registry.version_schema(version)
    if (spec.recipe is None) == (spec.keras_sha256 is None):
        raise InvalidInputError("name a recipe, or the sha256 of an uploaded Keras model")
    source_id = None
    if spec.recipe is not None:
        info = recipe(spec.recipe)
        info.check_fit(sample_schema)
        info.check_params(spec.params)
        if spec.search_space is not None:
            info.check_space(spec.search_space)
    else:
        source = keras_sources.get_source(session=session, sha256=spec.keras_sha256 or "")
        declared = None if source.input_shape is None else tuple(source.input_shape)
        if declared is not None and declared != sample_schema.shape:
            raise InvalidInputError(
                f"the Keras model's input {declared} does not take the dataset's samples of "
                f"shape {sample_schema.shape}",
                reason="shape_mismatch",
            )
        if not sample_schema.labelled:
            raise InvalidInputError(
                "an uploaded model is evaluated against labels; the dataset has none"
            )
        source_id = source.id
    profiles = spec.profiles or tuple(catalog.names())
    for name in profiles:
        catalog.get(name)
    if len(set(profiles)) != len(profiles):
        raise InvalidInputError("profiles repeat")
    budget = default_budget if spec.budget_points is None else spec.budget_points
    if not 0 <= budget <= 100:
        raise InvalidInputError(f"budget_points must be 0..100, got {budget}")
    if not 1 <= spec.trials <= MAX_TRIALS:
        raise InvalidInputError(f"trials must be 1..{MAX_TRIALS}, got {spec.trials}")
    if spec.metric not in (Metric.ACCURACY, Metric.F1):
        raise InvalidInputError("a classifier is judged by accuracy or f1")
    request = {
        "recipe": spec.recipe,
        "keras_sha256": spec.keras_sha256,
        "params": spec.params,
        "search_space": spec.search_space,
        "trials": spec.trials,
        "strategy": spec.strategy.value,
        "seed": spec.seed,
        "split": schema.to_json(dataset_registry.version_split(version)),
        "profiles": list(profiles),
        "budget_points": budget,
        "metric": spec.metric.value,
        "dataset": {"name": spec.dataset, "version": version.version, "sha256": version.sha256},
    }
    if spec.challenge is not None:
        request["challenge"] = schema.to_json(spec.challenge)
    return request, version.id, source_id


def snapshot(job: TrainingJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "model": job.model_name,
        "request": job.request,
        "cancel_requested": job.cancel_requested,
    }


def create_job(
    *,
    session: Session,
    spec: JobSpec,
    catalog: ProfileCatalog,
    default_budget: float = DEFAULT_BUDGET_POINTS,
    actor: str,
    now: float,
) -> TrainingJob:
    request, version_id, source_id = _checked_request(session, spec, catalog, default_budget)
    job = TrainingJob(
        state=JobState.QUEUED,
        model_name=spec.model,
        dataset_version_id=version_id,
        recipe=spec.recipe,
        keras_source_id=source_id,
        request=request,
        progress={},
        cancel_requested=False,
        created_at=now,
        created_by=actor,
    )
    session.add(job)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="training_job.create",
        target_type="training_job",
        target_id=str(job.id),
        now=now,
        after=snapshot(job),
    )
    session.commit()
    return job


def challenge_of(job: TrainingJob) -> Challenge | None:
    stored = job.request.get("challenge")
    return None if stored is None else schema.from_json(Challenge, stored)


def training_request(
    job: TrainingJob,
    catalog: ProfileCatalog,
    keras: bytes | None,
    baseline_x: npt.NDArray[np.float32] | None = None,
) -> TrainingRequest:
    """What the pipeline runs for ``job`` (in the worker)."""
    stored = job.request
    challenge = challenge_of(job)
    return TrainingRequest(
        profiles=tuple(catalog.get(name) for name in stored["profiles"]),
        recipe=stored["recipe"],
        keras_model=keras,
        params=stored["params"],
        search_space=stored["search_space"],
        trials=stored["trials"],
        strategy=Strategy(stored["strategy"]),
        seed=stored["seed"],
        split=schema.from_json(SplitSpec, stored["split"]),
        budget_points=stored["budget_points"],
        metric=Metric(stored["metric"]),
        edge_weight=1 if challenge is None else challenge.edge_weight,
        baseline_x=baseline_x,
    )


# -- reading ---------------------------------------------------------------------


def get_job(*, session: Session, job_id: int) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise NotFoundError(f"no training job {job_id}")
    return job


def list_jobs(
    *, session: Session, state: JobState | None, limit: int, offset: int
) -> Sequence[TrainingJob]:
    """Newest first."""
    query = select(TrainingJob)
    if state is not None:
        query = query.where(TrainingJob.state == state.value)
    return session.scalars(query.order_by(TrainingJob.id.desc()).limit(limit).offset(offset)).all()


def logs(*, session: Session, job_id: int, after: int, limit: int) -> Sequence[TrainingJobLog]:
    get_job(session=session, job_id=job_id)
    query = (
        select(TrainingJobLog)
        .where(TrainingJobLog.job_id == job_id, TrainingJobLog.id > after)
        .order_by(TrainingJobLog.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def registered_version(*, session: Session, job: TrainingJob) -> ModelVersion | None:
    """The model version the job registered, found by its lineage."""
    return session.scalar(select(ModelVersion).where(ModelVersion.training_run == run_id(job.id)))


# -- transitions -----------------------------------------------------------------


def cancel_job(*, session: Session, job_id: int, actor: str, now: float) -> TrainingJob:
    """A queued job is cancelled at once; a running one is asked to stop (its worker obeys)."""
    job = get_job(session=session, job_id=job_id)
    before = snapshot(job)
    if job.state in FINISHED:
        raise ConflictError(f"training job {job_id} is {job.state} already")
    if job.state == JobState.QUEUED:
        job.state, job.finished_at, job.error = JobState.CANCELLED, now, f"cancelled by {actor}"
    job.cancel_requested = True
    audit.record(
        session=session,
        actor=actor,
        action="training_job.cancel",
        target_type="training_job",
        target_id=str(job_id),
        now=now,
        before=before,
        after=snapshot(job),
    )
    session.commit()
    return job


def claim_next(*, session: Session, now: float, runner: str) -> int | None:
    """Take the oldest queued job (queued -> running) for ``runner``; None when there is none."""
    while True:
        job_id = session.scalar(
            select(TrainingJob.id)
            .where(TrainingJob.state == JobState.QUEUED)
            .order_by(TrainingJob.id)
            .limit(1)
        )
        if job_id is None:
            return None
        claimed = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.state == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                started_at=now,
                claimed_by=runner,
                progress={"phase": "starting"},
            )
        )
        session.commit()
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            return job_id


def set_worker(*, session: Session, job_id: int, pid: int | None) -> None:
    session.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(worker_pid=pid))
    session.commit()


def record_progress(*, session: Session, job_id: int, progress: dict[str, Any]) -> bool:
    """Store the job's progress; True if it was asked to cancel meanwhile."""
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.state == JobState.RUNNING)
        .values(progress=progress)
    )
    cancel = session.scalar(select(TrainingJob.cancel_requested).where(TrainingJob.id == job_id))
    session.commit()
    return bool(cancel)


def append_log(*, session: Session, job_id: int, message: str, now: float) -> None:
    session.add(TrainingJobLog(job_id=job_id, at=now, message=message[:MAX_LOG_CHARS]))
    session.commit()


def finish(
    *,
    session: Session,
    job_id: int,
    state: JobState,
    now: float,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    model_version: int | None = None,
) -> bool:
    """running -> ``state``; False if the job was not running any more."""
    done = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.state == JobState.RUNNING)
        .values(
            state=state,
            finished_at=now,
            error=None if error is None else error[:MAX_LOG_CHARS],
            result=result,
            model_version=model_version,
            worker_pid=None,
        )
    )
    session.commit()
    return done.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def fail_orphans(*, session: Session, now: float, reason: str, runner: str) -> list[int]:
    """Mark ``runner``'s ``running`` jobs failed: when it starts, none of its workers can be alive.

    Jobs other runners (other hosts) hold are theirs to finish.
    """
    orphans = list(
        session.scalars(
            select(TrainingJob.id).where(
                TrainingJob.state == JobState.RUNNING, TrainingJob.claimed_by == runner
            )
        )
    )
    for job_id in orphans:
        finish(session=session, job_id=job_id, state=JobState.FAILED, now=now, error=reason)
    return orphans
