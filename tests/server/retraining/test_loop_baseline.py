"""Which edge samples the challenger's drift baseline is counted over, on SQLite and PostgreSQL.

Each case runs the loop's own :meth:`RetrainingLoop.tick` on a champion that a
real job request trained (so the loop can retrain it), with drift windows and
edge samples stored as ingest stores them, until the loop starts the
challenger's training job; the baseline is then read back from the artifact
store as the training worker reads it. Draws from flagged windows sit around
``+SHIFT`` (or ``-SHIFT``), all others around 0, so a leaked draw is visible,
but the checks compare the exact rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server import keys, registry
from edgefleet.server.alerts import Alerts
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import (
    JobState,
    RetrainingRun,
    RetrainingState,
    TrainingJob,
    VersionStage,
)
from edgefleet.server.metrics import Metrics
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.retraining.loop import MIN_BASELINE_SAMPLES, LoopParts, RetrainingLoop
from edgefleet.server.retraining.policy import policy_from_dict
from edgefleet.server.retraining.runs import set_policy
from edgefleet.server.signing import SigningService
from edgefleet.server.training import datasets, jobs
from edgefleet.shared.manifest import Baseline
from tests.harness.models import TfliteModels
from tests.server.edge_data import add_samples, add_window, draw, register

REPO = Path(__file__).resolve().parents[3]
T = 1_767_225_600.0
"""A whole minute, so a cron of every minute has a slot at each ``T + 60 * n``."""
MODEL = "vib"
DATASET = "vib-data"
SHIFT = 6.0
DRAWS = 60
"""Reservoir draws per window: two flagged windows give more than ``MIN_BASELINE_SAMPLES``."""
DRIFT = {"drift": {"min_devices": 1, "consecutive_windows": 2}}
HOT, COLD = 3.0, 0.3
"""Window scores: above 1 is flagged at ingest, below is not."""

Rows = list[bytes]


@dataclass
class Fleet:
    sessions: sessionmaker[Session]
    store: ArtifactStore
    catalog: ProfileCatalog
    baseline: Baseline
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    now: float = T
    loop: RetrainingLoop = field(init=False)

    def __post_init__(self) -> None:
        metrics = Metrics()
        self.loop = RetrainingLoop(
            LoopParts(
                sessions=self.sessions,
                store=self.store,
                catalog=self.catalog,
                alerts=Alerts(metrics),
                metrics=metrics,
                clock=lambda: self.now,
            )
        )

    def policy(self, **fields: Any) -> None:
        """Training on the champion's dataset alone, so no run waits for labels."""
        policy = {"data": {"include_edge_samples": False}, "approval": "manual", **fields}
        with self.sessions() as session:
            set_policy(
                session=session,
                model=MODEL,
                policy=policy_from_dict(policy),
                actor="test",
                now=self.now,
            )

    def window(
        self,
        device: str,
        end: float,
        *,
        score: float | None,
        mean: float = 0.0,
        draws: int = DRAWS,
        hard: int = 0,
    ) -> Rows:
        """A judged window (flagged when ``score`` > 1) with ``draws`` reservoir draws and
        ``hard`` low-confidence ones around ``mean``; the reservoir draws' bytes."""
        with self.sessions() as session:
            stored = add_window(
                session,
                model=MODEL,
                version=1,
                device=device,
                end=end,
                count=200,
                features=draw(self.baseline, 200, self.rng),
                score=score,
                flagged=score is not None and score > 1,
            )
            kept = self._rows(draws, mean)
            for reason, rows in (("reservoir", kept), ("low_confidence", self._rows(hard, mean))):
                add_samples(
                    session,
                    model=MODEL,
                    version=1,
                    device=device,
                    values=rows.tolist(),
                    received_at=end,
                    reason=reason,
                    window_seq=stored.seq,
                )
        return [row.tobytes() for row in kept]

    def tick(self, at: float) -> None:
        self.now = at
        self.loop.tick()

    def runs(self) -> list[RetrainingRun]:
        """Oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(RetrainingRun).order_by(RetrainingRun.id)))

    def newest_run(self) -> RetrainingRun:
        runs = self.runs()
        assert runs, "the loop started no run"
        return runs[-1]

    def challenger_baseline(self) -> Rows | None:
        """The rows the newest run's training job counts its drift baseline over, sorted;
        None when the job was handed none (the worker then counts the training rows)."""
        run = self.newest_run()
        assert run.state == RetrainingState.TRAINING, (run.state, run.reason)
        with self.sessions() as session:
            job = session.get(TrainingJob, run.job_id)
            assert job is not None
            challenge = jobs.challenge_of(job)
        assert challenge is not None
        if challenge.baseline_sha256 is None:
            return None
        x = datasets.from_bytes(self.store.read(challenge.baseline_sha256)).x
        assert x.dtype == np.float32
        return sorted(row.tobytes() for row in x)

    def fail_newest_job(self) -> None:
        with self.sessions() as session:
            job = session.get(TrainingJob, self.newest_run().job_id)
            assert job is not None
            job.state, job.error = JobState.FAILED, "stopped by the test"
            session.commit()

    def _rows(self, count: int, mean: float) -> np.ndarray[Any, np.dtype[np.float32]]:
        return self.rng.normal(mean, 1.0, size=(count, 4)).astype("<f4")


@pytest.fixture
def fleet(db_url: str, tmp_path: Path, tflite_models: TfliteModels) -> Iterator[Fleet]:
    """v1 of the model approved as champion, trained (by its lineage) by a real job request."""
    keys.init_keys(root_dir=tmp_path / "root", signing_dir=tmp_path / "signing", now=int(T))
    store = ArtifactStore(tmp_path / "artifacts")
    catalog = ProfileCatalog.load(REPO / "firmware_configs")
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            registered = register(
                session,
                store=store,
                signing=SigningService.load(tmp_path / "signing"),
                catalog=catalog,
                tflite=tflite_models.float32,
                model=MODEL,
                dataset=DATASET,
                now=T,
            )
            trained_by = jobs.create_job(
                session=session,
                spec=jobs.JobSpec(model=MODEL, dataset=DATASET, recipe="mlp", profiles=("sim",)),
                catalog=catalog,
                actor="test",
                now=T,
            )
            trained_by.state = JobState.SUCCEEDED
            registered.version.training_run = jobs.run_id(trained_by.id)
            registry.set_stage(
                session=session,
                name=MODEL,
                version=1,
                stage=VersionStage.APPROVED,
                actor="test",
                now=T,
            )
        yield Fleet(sessions, store, catalog, registered.baseline)
    finally:
        engine.dispose()


def test_after_drift_the_baseline_holds_only_draws_from_flagged_windows(fleet: Fleet) -> None:
    fleet.policy(**DRIFT)
    before = [
        *fleet.window("dev-a", T + 60, score=COLD),
        *fleet.window("dev-a", T + 120, score=0.9),
    ]
    shifted = [
        *fleet.window("dev-a", T + 180, score=HOT, mean=SHIFT, hard=5),
        *fleet.window("dev-a", T + 240, score=HOT, mean=SHIFT, hard=5),
    ]
    calm = fleet.window("dev-b", T + 240, score=COLD)
    unjudged = fleet.window("dev-b", T + 250, score=None)

    fleet.tick(T + 300)

    assert fleet.newest_run().trigger["reason"] == "drift"
    found = fleet.challenger_baseline()
    assert found == sorted(shifted)
    assert not set(found) & set(before + calm + unjudged)
    mean = np.frombuffer(b"".join(found), dtype="<f4").mean()
    assert mean == pytest.approx(SHIFT, abs=0.5)


@pytest.mark.parametrize(
    ("score", "draws"),
    [(0.8, DRAWS), (HOT, MIN_BASELINE_SAMPLES - 1), (HOT, MIN_BASELINE_SAMPLES)],
    ids=["no-flagged-window", "too-few-flagged-draws", "just-enough-flagged-draws"],
)
def test_a_drift_trigger_with_too_few_flagged_draws_leaves_the_baseline_to_the_training_rows(
    fleet: Fleet, score: float, draws: int
) -> None:
    # A policy threshold under 1 fires on windows that ingest did not flag.
    fleet.policy(drift={"min_devices": 1, "consecutive_windows": 2, "score_threshold": 0.5})
    for device in ("dev-a", "dev-b"):
        fleet.window(device, T + 60, score=0.8, draws=MIN_BASELINE_SAMPLES)
    fleet.window("dev-b", T + 120, score=0.8, draws=MIN_BASELINE_SAMPLES)
    last = fleet.window("dev-a", T + 120, score=score, mean=SHIFT, draws=draws)

    fleet.tick(T + 300)

    assert fleet.newest_run().trigger["devices"] == ["dev-a", "dev-b"]
    found = fleet.challenger_baseline()
    if score > 1 and draws >= MIN_BASELINE_SAMPLES:
        assert found == sorted(last)
    else:
        assert found is None


def test_a_trigger_that_is_not_drift_counts_every_reservoir_draw(fleet: Fleet) -> None:
    fleet.policy(schedule={"cron": "* * * * *"})
    fleet.tick(T + 10)  # the first check only starts the clock: no slot fires
    assert fleet.runs() == []
    drawn = [
        *fleet.window("dev-a", T + 20, score=COLD, hard=4),
        *fleet.window("dev-a", T + 30, score=HOT, mean=SHIFT, hard=4),
        *fleet.window("dev-b", T + 40, score=None),
    ]

    fleet.tick(T + 60)

    assert fleet.newest_run().trigger["reason"] == "schedule"
    assert fleet.challenger_baseline() == sorted(drawn)


def test_a_second_drift_counts_only_windows_flagged_since_the_previous_trigger(
    fleet: Fleet,
) -> None:
    """Windows flagged before the first run came from the shift that run was for: blended in,
    they would flag the second challenger on the very inputs it is trained for."""
    fleet.policy(**DRIFT, cooldown_seconds=60)
    first = [
        *fleet.window("dev-a", T + 60, score=HOT, mean=SHIFT),
        *fleet.window("dev-a", T + 120, score=HOT, mean=SHIFT),
    ]
    fleet.tick(T + 180)
    assert fleet.challenger_baseline() == sorted(first)
    fleet.fail_newest_job()
    fleet.tick(T + 190)
    assert fleet.newest_run().state == RetrainingState.FAILED

    second = [
        *fleet.window("dev-a", T + 240, score=HOT, mean=-SHIFT),
        *fleet.window("dev-a", T + 300, score=HOT, mean=-SHIFT),
    ]
    fleet.tick(T + 360)

    assert [(r.state, r.trigger["reason"]) for r in fleet.runs()] == [
        (RetrainingState.FAILED, "drift"),
        (RetrainingState.TRAINING, "drift"),
    ]
    assert fleet.challenger_baseline() == sorted(second)
