"""The fingerprint the live-update stream polls: one aggregate per topic, each over a
primary key or a small table, in one short session (never held between polls)."""

from __future__ import annotations

from collections.abc import Hashable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.db.models import (
    ACTIVE_ROLLOUT_STATES,
    Device,
    DeviceEvent,
    DriftWindow,
    JobState,
    Model,
    ModelVersion,
    RetrainingPolicyRecord,
    RetrainingRun,
    Rollout,
    RolloutDevice,
    TelemetryRecord,
    TrainingJob,
)


def _training(session: Session) -> Hashable:
    """The newest job and the progress of unfinished ones (few rows: the runner's queue)."""
    unfinished = session.execute(
        select(TrainingJob.id, TrainingJob.state, TrainingJob.progress).where(
            TrainingJob.state.in_((JobState.QUEUED, JobState.RUNNING))
        )
    ).all()
    newest = session.scalar(select(func.max(TrainingJob.id)))
    return (newest, tuple((i, s, repr(sorted((p or {}).items()))) for i, s, p in unfinished))


def _models(session: Session) -> Hashable:
    """New models and versions, and stage changes (versions have no update time; a
    promotion moves the per-stage counts). The registry holds hundreds of rows, not millions."""
    stages = session.execute(
        select(ModelVersion.stage, func.count()).group_by(ModelVersion.stage)
    ).all()
    return (
        session.scalar(select(func.max(Model.id))),
        session.scalar(select(func.max(ModelVersion.id))),
        tuple(sorted((str(stage), int(n)) for stage, n in stages)),
    )


def _retraining(session: Session) -> Hashable:
    """Runs and policies (few rows); a policy's ``last_checked_at`` moves on every loop
    tick without anything an operator would see changing, so it is left out."""
    runs = session.execute(select(func.max(RetrainingRun.id), func.max(RetrainingRun.updated_at)))
    policies = session.execute(
        select(
            func.max(RetrainingPolicyRecord.updated_at),
            func.max(RetrainingPolicyRecord.last_triggered_at),
        )
    )
    return (tuple(runs.one()), tuple(policies.one()))


def fingerprint(sessions: sessionmaker[Session]) -> dict[str, Hashable]:
    with sessions() as session:
        states = session.execute(
            select(Device.state, func.count(), func.max(Device.updated_at)).group_by(Device.state)
        ).all()
        rollouts = session.execute(
            select(Rollout.id, Rollout.state, Rollout.current_wave, Rollout.updated_at).where(
                Rollout.state.in_(ACTIVE_ROLLOUT_STATES)
            )
        ).all()
        return {
            "devices": tuple(sorted((str(s), int(n), m) for s, n, m in states)),
            "telemetry": session.scalar(select(func.max(TelemetryRecord.id))),
            "events": session.scalar(select(func.max(DeviceEvent.id))),
            "rollouts": (
                session.scalar(select(func.max(Rollout.updated_at))),
                tuple(tuple(r) for r in rollouts),
                session.scalar(
                    select(func.max(RolloutDevice.updated_at)).where(
                        RolloutDevice.rollout_id.in_([r[0] for r in rollouts])
                    )
                )
                if rollouts
                else None,
            ),
            "training": _training(session),
            "drift": session.scalar(select(func.max(DriftWindow.id))),
            "retraining": _retraining(session),
            "models": _models(session),
        }
