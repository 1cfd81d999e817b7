"""The job queue in the database (SQLite and PostgreSQL): checks, transitions, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import AuditRecord, JobState
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.training import dataset_registry, jobs, synthetic
from edgefleet.server.training.datasets import SplitSpec
from edgefleet.server.training.jobs import JobSpec

T = 1_767_225_600.0


@dataclass
class Queue:
    session: Session
    catalog: ProfileCatalog

    def create(self, **fields: Any) -> int:
        spec = JobSpec(**{"model": "vib", "dataset": "sensors", "recipe": "cnn1d", **fields})
        job = jobs.create_job(
            session=self.session, spec=spec, catalog=self.catalog, actor="op", now=T
        )
        return job.id


@pytest.fixture
def queue(db_url: str, tmp_path: Path, catalog: ProfileCatalog) -> Iterator[Queue]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    try:
        with make_sessionmaker(engine)() as session:
            dataset_registry.import_version(
                session=session,
                store=ArtifactStore(tmp_path / "artifacts"),
                name="sensors",
                samples=synthetic.generate(40, seed=0, spec=synthetic.SensorSpec(window=8)),
                split=SplitSpec(),
                source={"format": "synthetic"},
                actor="op",
                now=T,
            )
            yield Queue(session, catalog)
    finally:
        engine.dispose()


def test_a_job_records_everything_the_run_reads(queue: Queue) -> None:
    job = jobs.get_job(session=queue.session, job_id=queue.create(seed=3, profiles=("rpi4",)))
    assert job.state == JobState.QUEUED
    assert job.request["dataset"]["version"] == 1
    assert job.request["split"] == {"seed": 0, "validation": 0.15, "test": 0.15, "segments": []}
    assert job.request["profiles"] == ["rpi4"]
    assert job.request["budget_points"] == 1.0
    request = jobs.training_request(job, queue.catalog, None)
    assert request.recipe == "cnn1d"
    assert request.seed == 3
    actions = [r.action for r in queue.session.query(AuditRecord).all()]
    assert actions == ["dataset.import", "training_job.create"]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"dataset": "nope"}, NotFoundError, "no dataset 'nope'"),
        ({"dataset_version": 4}, NotFoundError, "has no version 4"),
        (
            {"recipe": "cnn2d"},
            InvalidInputError,
            r"takes image samples; .* timeseries of shape \(8, 3\)",
        ),
        ({"recipe": "mlp", "params": {"epochz": 1}}, InvalidInputError, "no hyperparameter"),
        ({"profiles": ("toaster",)}, InvalidInputError, "unknown hardware profile 'toaster'"),
        ({"model": "Bad Name!"}, InvalidInputError, "invalid model name"),
        ({"recipe": None}, InvalidInputError, "name a recipe"),
        ({"keras_sha256": "ab" * 32}, InvalidInputError, "name a recipe"),
        ({"recipe": None, "keras_sha256": "ab" * 32}, NotFoundError, "no uploaded Keras model"),
        ({"search_space": {"kernel_size": [3, 999]}}, InvalidInputError, "outside 2..64"),
    ],
)
def test_bad_jobs_are_refused_before_they_queue(
    queue: Queue, fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        queue.create(**fields)
    assert jobs.list_jobs(session=queue.session, state=None, limit=10, offset=0) == []


def test_jobs_are_claimed_oldest_first_and_once(queue: Queue) -> None:
    first, second = queue.create(), queue.create()
    assert jobs.claim_next(session=queue.session, now=T, runner="host-a") == first
    assert jobs.claim_next(session=queue.session, now=T, runner="host-a") == second
    assert jobs.claim_next(session=queue.session, now=T, runner="host-a") is None
    assert jobs.finish(session=queue.session, job_id=first, state=JobState.SUCCEEDED, now=T)
    assert not jobs.finish(session=queue.session, job_id=first, state=JobState.FAILED, now=T)
    queue.session.expire_all()
    assert jobs.get_job(session=queue.session, job_id=first).state == JobState.SUCCEEDED


def test_cancel_stops_a_queued_job_and_flags_a_running_one(queue: Queue) -> None:
    waiting, running = queue.create(), queue.create()
    jobs.claim_next(session=queue.session, now=T, runner="host-a")  # claims `waiting` (oldest)
    assert jobs.claim_next(session=queue.session, now=T, runner="host-a") == running
    job = jobs.cancel_job(session=queue.session, job_id=running, actor="op", now=T)
    assert (job.state, job.cancel_requested) == (JobState.RUNNING, True)
    assert jobs.record_progress(session=queue.session, job_id=running, progress={"phase": "x"})
    jobs.finish(session=queue.session, job_id=waiting, state=JobState.FAILED, now=T, error="boom")
    with pytest.raises(ConflictError, match="failed already"):
        jobs.cancel_job(session=queue.session, job_id=waiting, actor="op", now=T)
    queued = queue.create()
    job = jobs.cancel_job(session=queue.session, job_id=queued, actor="op", now=T)
    assert job.state == JobState.CANCELLED
    assert jobs.claim_next(session=queue.session, now=T, runner="host-a") is None


def test_a_restarted_runner_fails_its_own_running_jobs_only(queue: Queue) -> None:
    job_id, elsewhere = queue.create(), queue.create()
    jobs.claim_next(session=queue.session, now=T, runner="host-a")
    jobs.claim_next(session=queue.session, now=T, runner="host-b")
    assert jobs.fail_orphans(session=queue.session, now=T, reason="restarted", runner="host-a") == [
        job_id
    ]
    assert jobs.get_job(session=queue.session, job_id=elsewhere).state == JobState.RUNNING
    queue.session.expire_all()
    job = jobs.get_job(session=queue.session, job_id=job_id)
    assert (job.state, job.error) == (JobState.FAILED, "restarted")


def test_logs_page_by_id(queue: Queue) -> None:
    job_id = queue.create()
    for n in range(5):
        jobs.append_log(session=queue.session, job_id=job_id, message=f"line {n}", now=T)
    first = jobs.logs(session=queue.session, job_id=job_id, after=0, limit=2)
    rest = jobs.logs(session=queue.session, job_id=job_id, after=first[-1].id, limit=10)
    assert [line.message for line in [*first, *rest]] == [f"line {n}" for n in range(5)]
