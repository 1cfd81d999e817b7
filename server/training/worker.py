"""The worker process: runs one training job and registers what it produced.

Started by :class:`~edgefleet.server.training.runner.JobRunner` with the
``spawn`` start method, so it inherits no threads, sockets or locks from the
server and imports TensorFlow in a process of its own. It opens its own
database engine and reads keys, profiles and artifacts from the paths in
:class:`WorkerConfig`. Whatever happens, it ends the job in exactly one
state; if the process itself dies, the runner does it.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server import registry, tflite_model
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import JobState, ModelVersion, TrainingJob
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.signing import SigningService
from edgefleet.server.training import challenge, dataset_registry, datasets, jobs, pipeline, recipes
from edgefleet.server.training.evaluate import Judge
from edgefleet.server.training.pipeline import PipelineResult
from edgefleet.server.training.progress import Cancelled
from edgefleet.server.training.recipe_specs import Task
from edgefleet.shared import __version__
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.manifest import SelfTest

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker needs, as plain picklable values."""

    database_url: str
    artifact_dir: Path
    signing_dir: Path
    profiles_dir: Path
    threads: int = 1
    progress_interval: float = 0.5


class DatabaseProgress:
    """Progress into the job's row (at most every ``interval`` seconds) and log lines.

    Each progress write reads the job's cancel flag back, so a cancel takes
    effect at the next epoch or phase.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: int, interval: float) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._interval = interval
        self._last_write = 0.0
        self._phase = ""

    def update(self, phase: str, **fields: Any) -> None:
        now = time.time()
        if phase == self._phase and now - self._last_write < self._interval:
            return
        self._phase, self._last_write = phase, now
        with self._sessions() as session:
            cancel = jobs.record_progress(
                session=session, job_id=self._job_id, progress={"phase": phase, **fields, "at": now}
            )
        if cancel:
            raise Cancelled

    def log(self, message: str) -> None:
        with self._sessions() as session:
            jobs.append_log(session=session, job_id=self._job_id, message=message, now=time.time())


def _configure_tensorflow(threads: int) -> None:
    """Few threads: the server's cores are shared with ingest and the API."""
    tf = recipes.tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def register(
    *,
    session: Session,
    job: TrainingJob,
    result: PipelineResult,
    store: ArtifactStore,
    signing: SigningService,
    catalog: ProfileCatalog,
    now: float,
) -> ModelVersion:
    """The next version of the job's model, one signed artifact per served profile."""
    rows = result.self_test_inputs.reshape(len(result.self_test_inputs), -1)
    self_tests: dict[str, SelfTest] = {}
    uploads = []
    for profile, name in sorted(result.selection.items()):
        variant = result.variants[name]
        if variant.data is None:  # only publishable variants are selected, and they have bytes
            continue
        if name not in self_tests:
            self_tests[name] = tflite_model.self_test_vectors(variant.data, inputs=rows)
        uploads.append(
            registry.ArtifactUpload(
                hardware_profile=profile,
                variant=variant.key.variant.value,
                data=variant.data,
                self_test=self_tests[name],
            )
        )
    keras = store.put(result.keras_model)
    spec = registry.VersionSpec(
        # The version describes itself: how it was trained travels with its metrics.
        metrics={**result.metrics(), "lineage": result.lineage},
        dataset_hash=job.request["dataset"]["sha256"],
        training_run=jobs.run_id(job.id),
        quantization={
            "profiles": result.selection,
            "unserved": result.unserved,
            "budget_points": result.lineage["budget_points"],
            "int8_io": sorted(n for n in result.selection.values() if n.endswith("-io")),
            "keras_sha256": keras.sha256,
        },
        code_version=__version__,
        baseline=result.baseline,
    )
    return registry.add_version(
        session=session,
        model_name=job.model_name,
        uploads=uploads,
        spec=spec,
        store=store,
        signing=signing,
        catalog=catalog,
        actor=job.created_by,
        now=now,
    )


def _execute(config: WorkerConfig, sessions: sessionmaker[Session], job_id: int) -> None:
    store = ArtifactStore(config.artifact_dir)
    catalog = ProfileCatalog.load(config.profiles_dir)
    progress = DatabaseProgress(sessions, job_id, config.progress_interval)
    with sessions() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        samples = dataset_registry.load_samples(store=store, version=job.dataset_version)
        keras = None if job.keras_source is None else store.read(job.keras_source.sha256)
        challenge = jobs.challenge_of(job)
        baseline_x = None
        if challenge is not None and challenge.baseline_sha256 is not None:
            baseline_x = datasets.from_bytes(store.read(challenge.baseline_sha256)).x
        request = jobs.training_request(job, catalog, keras, baseline_x)
        champions = {} if challenge is None else _artifacts(session, job.model_name, challenge)
    progress.update("starting")
    _configure_tensorflow(config.threads)
    result = pipeline.run(request, samples, progress)
    contest = None
    if challenge is not None:
        progress.update("challenging", champion=challenge.champion)
        contest = _contest(request, samples, result, champions, store)
        progress.log(f"champion v{challenge.champion} against the challenger: {contest}")
    progress.update("registering")  # the last point where a cancel still stops the job
    signing = SigningService.load(config.signing_dir)
    with sessions() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        version = register(
            session=session,
            job=job,
            result=result,
            store=store,
            signing=signing,
            catalog=catalog,
            now=time.time(),
        )
        summary = {
            "metrics": result.metrics(),
            "selection": result.selection,
            "unserved": result.unserved,
            "lineage": result.lineage,
            "artifacts": {a.hardware_profile: a.sha256 for a in version.artifacts},
        }
        if contest is not None:
            summary["challenge"] = contest
        jobs.finish(
            session=session,
            job_id=job_id,
            state=JobState.SUCCEEDED,
            now=time.time(),
            result=summary,
            model_version=version.version,
        )
        jobs.append_log(
            session=session,
            job_id=job_id,
            message=f"registered {job.model_name} v{version.version}: {result.selection}",
            now=time.time(),
        )


def _artifacts(session: Session, model: str, challenge: jobs.Challenge) -> dict[str, str]:
    """The champion's artifact per hardware profile (profile -> sha256)."""
    champion = registry.get_version(session=session, name=model, version=challenge.champion)
    return {a.hardware_profile: a.sha256 for a in champion.artifacts}


def _contest(
    request: pipeline.TrainingRequest,
    samples: datasets.Samples,
    result: PipelineResult,
    champions: dict[str, str],
    store: ArtifactStore,
) -> dict[str, Any]:
    """Both models measured on one profile they both serve (the first, by name)."""
    shared = sorted(set(result.selection) & set(champions))
    if not shared:
        raise InvalidInputError(
            "the challenger and the champion serve no hardware profile in common",
            reason="no_common_profile",
        )
    profile = shared[0]
    challenger = result.variants[result.selection[profile]].data
    if challenger is None:
        raise InvalidInputError(f"the challenger has no artifact for {profile!r}")
    contenders = challenge.Contenders(profile, store.read(champions[profile]), challenger)
    judge = Judge(Task.CLASSIFIER, len(samples.schema.labels), primary=result.metric)
    return challenge.measure(samples, request.split, judge, contenders)


def _failure(
    config: WorkerConfig, sessions: sessionmaker[Session], job_id: int
) -> tuple[JobState, str] | None:
    """Run the job; how it ended if not with success (which :func:`_execute` records)."""
    try:
        _execute(config, sessions, job_id)
    except Cancelled:
        return JobState.CANCELLED, "cancelled on request"
    except EdgefleetError as err:
        return JobState.FAILED, str(err)
    except Exception as err:  # noqa: BLE001 - the job must end failed, with the reason
        with sessions() as session:
            jobs.append_log(
                session=session, job_id=job_id, message=traceback.format_exc(), now=time.time()
            )
        return JobState.FAILED, f"internal error: {type(err).__name__}: {err}"
    return None


def main(config: WorkerConfig, job_id: int) -> None:
    """The process's target: run ``job_id`` and end it in one state, whatever happens."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    engine = make_engine(config.database_url)
    sessions = make_sessionmaker(engine)
    try:
        failure = _failure(config, sessions, job_id)
        if failure is not None:
            state, error = failure
            with sessions() as session:
                jobs.append_log(session=session, job_id=job_id, message=error, now=time.time())
                jobs.finish(
                    session=session, job_id=job_id, state=state, now=time.time(), error=error
                )
    finally:
        engine.dispose()
