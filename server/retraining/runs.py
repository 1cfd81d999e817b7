"""Retraining policies and runs in the database: what the API, the CLI and the loop share.

A policy is stored in its JSON form (``retraining.policy``), checked again
against the registry when it is set (its groups and dataset must exist). A
run ends in exactly one place, :func:`finish_run`, which frees the model for
its next run, raises the alert and counts the outcome; promotion, whether
automatic or approved by an operator, goes through :func:`promote`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server import audit, groups, registry
from edgefleet.server.alerts import Alerts
from edgefleet.server.db.models import (
    Model,
    RetrainingPolicyRecord,
    RetrainingRun,
    RetrainingState,
    VersionStage,
)
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.metrics import Metrics
from edgefleet.server.retraining.policy import (
    RetrainingPolicy,
    policy_from_dict,
    policy_to_dict,
    rollout_target,
)
from edgefleet.server.rollouts import service as rollouts
from edgefleet.server.rollouts.policy import RolloutPolicy
from edgefleet.server.rollouts.policy import policy_from_dict as rollout_policy_from_dict
from edgefleet.server.training import dataset_registry
from edgefleet.shared.errors import EdgefleetError

UNFINISHED = (
    RetrainingState.WAITING_FOR_LABELS,
    RetrainingState.TRAINING,
    RetrainingState.AWAITING_APPROVAL,
)


def run_snapshot(run: RetrainingRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "model": run.model_name,
        "state": run.state,
        "trigger": run.trigger,
        "champion_version": run.champion_version,
        "dataset": run.dataset_name,
        "dataset_version": run.dataset_version,
        "job_id": run.job_id,
        "challenger_version": run.challenger_version,
        "decision": run.decision,
        "rollout_id": run.rollout_id,
        "reason": run.reason,
    }


# -- policies ----------------------------------------------------------------------


def get_policy(*, session: Session, model: str) -> RetrainingPolicy | None:
    record = _record(session, registry.get_model(session=session, name=model))
    return None if record is None else policy_from_dict(record.policy)


def set_policy(
    *, session: Session, model: str, policy: RetrainingPolicy, actor: str, now: float
) -> RetrainingPolicyRecord:
    """Store ``policy`` for ``model`` (replacing any); the names it uses must exist."""
    found = registry.get_model(session=session, name=model)
    for group in {policy.group, policy.rollout_group} - {None}:
        groups.get_group(session=session, name=str(group))
    if policy.data.dataset is not None:
        dataset_registry.get_dataset(session=session, name=policy.data.dataset)
    record = _record(session, found)
    before = None if record is None else record.policy
    written = policy_to_dict(policy)
    if record is None:
        record = RetrainingPolicyRecord(
            model_id=found.id, policy=written, updated_at=now, updated_by=actor
        )
        session.add(record)
    else:
        record.policy, record.updated_at, record.updated_by = written, now, actor
    audit.record(
        session=session,
        actor=actor,
        action="retraining_policy.set",
        target_type="model",
        target_id=model,
        now=now,
        before=before,
        after=written,
    )
    session.commit()
    return record


def delete_policy(*, session: Session, model: str, actor: str, now: float) -> None:
    record = _record(session, registry.get_model(session=session, name=model))
    if record is None:
        raise NotFoundError(f"model {model!r} has no retraining policy")
    audit.record(
        session=session,
        actor=actor,
        action="retraining_policy.delete",
        target_type="model",
        target_id=model,
        now=now,
        before=record.policy,
    )
    session.delete(record)
    session.commit()


def record_policy_time(
    record: RetrainingPolicyRecord, *, checked_at: float, triggered_at: float | None
) -> None:
    record.last_checked_at = checked_at
    if triggered_at is not None:
        record.last_triggered_at = triggered_at


def _record(session: Session, model: Model) -> RetrainingPolicyRecord | None:
    return session.get(RetrainingPolicyRecord, model.id)


# -- runs ----------------------------------------------------------------------------


def get_run(*, session: Session, run_id: int) -> RetrainingRun:
    run = session.get(RetrainingRun, run_id)
    if run is None:
        raise NotFoundError(f"no retraining run {run_id}")
    return run


def list_runs(
    *, session: Session, model: str | None = None, before_id: int | None = None, limit: int = 50
) -> Sequence[RetrainingRun]:
    """Newest first, keyset-paginated by id."""
    query = select(RetrainingRun).order_by(RetrainingRun.id.desc()).limit(limit)
    if model is not None:
        query = query.where(RetrainingRun.model_name == model)
    if before_id is not None:
        query = query.where(RetrainingRun.id < before_id)
    return session.scalars(query).all()


def finish_run(
    *,
    session: Session,
    run: RetrainingRun,
    state: RetrainingState,
    reason: str,
    alerts: Alerts,
    metrics: Metrics,
    now: float,
) -> None:
    """End ``run`` in ``state``; the model may start its next run from now on."""
    run.state, run.reason = state, reason
    run.active_key, run.finished_at, run.updated_at = None, now, now
    alerts.raise_alert(
        session,
        kind=f"retraining.{state.value}",
        model=run.model_name,
        message=reason,
        detail={"run": run.id, "decision": run.decision, "rollout_id": run.rollout_id},
        now=now,
    )
    metrics.retraining_runs.labels(state.value).inc()
    session.commit()


def promote(
    *,
    session: Session,
    run: RetrainingRun,
    policy: RetrainingPolicy,
    alerts: Alerts,
    metrics: Metrics,
    actor: str,
    now: float,
) -> RetrainingRun:
    """Approve the challenger and open its staged rollout; a refused rollout fails the run."""

    def end(state: RetrainingState, reason: str) -> RetrainingRun:
        finish_run(
            session=session,
            run=run,
            state=state,
            reason=reason,
            alerts=alerts,
            metrics=metrics,
            now=now,
        )
        return run

    target = rollout_target(policy)
    if run.challenger_version is None or target is None:
        return end(RetrainingState.FAILED, "nothing to promote: no challenger or no rollout target")
    registry.set_stage(
        session=session,
        name=run.model_name,
        version=run.challenger_version,
        stage=VersionStage.APPROVED,
        actor=actor,
        now=now,
    )
    rollout_policy = (
        RolloutPolicy()
        if policy.rollout_policy is None
        else rollout_policy_from_dict(policy.rollout_policy)
    )
    try:
        rollout = rollouts.create_rollout(
            session=session,
            spec=rollouts.RolloutSpec(
                group=target,
                model=run.model_name,
                version=run.challenger_version,
                policy=rollout_policy,
            ),
            actor=actor,
            now=now,
        )
        rollouts.start_rollout(session=session, rollout_id=rollout.id, actor=actor, now=now)
    except EdgefleetError as err:
        session.rollback()
        return end(
            RetrainingState.FAILED,
            f"v{run.challenger_version} is approved but its rollout to {target!r} "
            f"was refused: {err}",
        )
    run.rollout_id = rollout.id
    return end(
        RetrainingState.PROMOTED,
        f"v{run.challenger_version} replaces v{run.champion_version}: rolling out to "
        f"{target!r} as {rollout.id}",
    )


def approve_run(
    *,
    session: Session,
    run_id: int,
    alerts: Alerts,
    metrics: Metrics,
    actor: str,
    now: float,
) -> RetrainingRun:
    run = _awaiting(session, run_id, "approve")
    policy = get_policy(session=session, model=run.model_name)
    if policy is None:
        raise ConflictError(f"model {run.model_name!r} no longer has a retraining policy")
    _audit_decision(session, run, "approve", actor=actor, now=now)
    return promote(
        session=session,
        run=run,
        policy=policy,
        alerts=alerts,
        metrics=metrics,
        actor=actor,
        now=now,
    )


def decline_run(
    *,
    session: Session,
    run_id: int,
    reason: str,
    alerts: Alerts,
    metrics: Metrics,
    actor: str,
    now: float,
) -> RetrainingRun:
    run = _awaiting(session, run_id, "decline")
    _audit_decision(session, run, "decline", actor=actor, now=now, reason=reason)
    finish_run(
        session=session,
        run=run,
        state=RetrainingState.DECLINED,
        reason=f"declined by {actor}: {reason}" if reason else f"declined by {actor}",
        alerts=alerts,
        metrics=metrics,
        now=now,
    )
    return run


def _awaiting(session: Session, run_id: int, action: str) -> RetrainingRun:
    run = get_run(session=session, run_id=run_id)
    if run.state != RetrainingState.AWAITING_APPROVAL:
        raise ConflictError(
            f"cannot {action} retraining run {run_id}: it is {run.state}, not awaiting_approval"
        )
    return run


def _audit_decision(
    session: Session, run: RetrainingRun, action: str, *, actor: str, now: float, reason: str = ""
) -> None:
    """The operator's decision under their own name; the alert that follows is the system's.

    Committed with the change it decides (the stage change or the run's end).
    """
    audit.record(
        session=session,
        actor=actor,
        action=f"retraining_run.{action}",
        target_type="retraining_run",
        target_id=str(run.id),
        now=now,
        before={"state": run.state},
        after={
            "model": run.model_name,
            "challenger_version": run.challenger_version,
            **({"reason": reason} if reason else {}),
        },
    )


def check_reason(reason: str) -> str:
    if len(reason) > 500:
        raise InvalidInputError("a reason is at most 500 characters")
    return reason
