"""Operator commands on rollouts: create, start, pause, resume, abort, approve.

Each command checks the rollout's state, changes it, writes its audit record
and commits, in one transaction. The waves themselves are driven by the
executor's tick (:mod:`edgefleet.server.rollouts.executor`); a command only
says what the operator wants, so a command and a tick never disagree about who
moves a wave on. Abort is the exception: it rolls devices back at once, since
that must not wait for a tick.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.server import audit, groups, registry
from edgefleet.server.db.models import (
    ACTIVE_ROLLOUT_STATES,
    Device,
    ModelVersion,
    Rollout,
    RolloutDevice,
    RolloutState,
    RolloutWave,
    VersionStage,
    WaveState,
)
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.rollouts import deployments
from edgefleet.server.rollouts.gates import DeviceRolloutState
from edgefleet.server.rollouts.planner import plan
from edgefleet.server.rollouts.policy import (
    AbortMode,
    RolloutPolicy,
    policy_from_dict,
    policy_to_dict,
)
from edgefleet.server.rollouts.window import is_open
from edgefleet.server.signing import SigningService

MAX_LIST = 500


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    group: str
    model: str
    version: int
    policy: RolloutPolicy


def snapshot(rollout: Rollout) -> dict[str, Any]:
    return {
        "id": rollout.id,
        "group": rollout.group_name,
        "model": rollout.model_name,
        "version": rollout.version,
        "state": rollout.state,
        "current_wave": rollout.current_wave,
        "reason": rollout.reason,
        "policy": rollout.policy,
    }


def get_rollout(*, session: Session, rollout_id: str) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise NotFoundError(f"no rollout {rollout_id[:80]!r}")
    return rollout


def list_rollouts(
    *,
    session: Session,
    state: RolloutState | None = None,
    group: str | None = None,
    model: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Rollout]:
    """Newest first."""
    query = select(Rollout)
    if state is not None:
        query = query.where(Rollout.state == state.value)
    if group is not None:
        query = query.where(Rollout.group_name == group)
    if model is not None:
        query = query.where(Rollout.model_name == model)
    query = query.order_by(Rollout.created_at.desc(), Rollout.id).limit(min(limit, MAX_LIST))
    return session.scalars(query.offset(offset)).all()


def policy_of(rollout: Rollout) -> RolloutPolicy:
    return policy_from_dict(rollout.policy)


def _approved_version(session: Session, model: str, version: int) -> ModelVersion:
    found = registry.get_version(session=session, name=model, version=version)
    if found.stage != VersionStage.APPROVED:
        raise InvalidInputError(
            f"{model} v{version} is {found.stage}: approve it before rolling it out "
            f"(`edgefleet models stage {model} {version} approved`)",
            reason="version_not_approved",
        )
    return found


def _group_devices(session: Session, group_name: str) -> tuple[int, list[Device]]:
    group = groups.get_group(session=session, name=group_name)
    ids = groups.members_of(session=session, group=group)
    if not ids:
        raise InvalidInputError(f"group {group_name!r} has no devices", reason="empty_group")
    found = session.scalars(select(Device).where(Device.id.in_(ids))).all()
    return group.id, [d for d in found if d.revoked_at is None]


def _check_profiles(version: ModelVersion, members: Sequence[Device]) -> None:
    """Every device's hardware profile needs an artifact of this version."""
    built = {a.hardware_profile for a in version.artifacts}
    missing = sorted({d.profile for d in members} - built)
    if missing:
        raise InvalidInputError(
            f"{version.model.name} v{version.version} has no artifact for profile(s) "
            f"{', '.join(missing)} used in the group (it has {', '.join(sorted(built))})",
            reason="profile_not_built",
        )


def _check_no_overlap(
    session: Session, model_name: str, device_ids: Sequence[str], own: str
) -> None:
    """No device may be in two active rollouts of the same model: its desired would flap."""
    busy = session.execute(
        select(RolloutDevice.device_id, Rollout.id)
        .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
        .where(
            Rollout.model_name == model_name,
            Rollout.state.in_([s.value for s in ACTIVE_ROLLOUT_STATES]),
            Rollout.id != own,
            RolloutDevice.device_id.in_(device_ids),
        )
        .limit(5)
    ).all()
    if busy:
        names = ", ".join(f"{device} ({rollout})" for device, rollout in busy)
        raise ConflictError(
            f"devices are in another active rollout of {model_name!r}: {names}",
            reason="overlapping_rollout",
        )


def create_rollout(*, session: Session, spec: RolloutSpec, actor: str, now: float) -> Rollout:
    """A draft: checked now (group, version, profiles, overlap), planned when started."""
    version = _approved_version(session, spec.model, spec.version)
    group_id, members = _group_devices(session, spec.group)
    _check_profiles(version, members)
    _check_no_overlap(session, spec.model, [d.id for d in members], own="")
    rollout = Rollout(
        id=f"ro-{secrets.token_hex(6)}",
        group_id=group_id,
        group_name=spec.group,
        model_id=version.model_id,
        model_name=spec.model,
        version=spec.version,
        policy=policy_to_dict(spec.policy),
        state=RolloutState.DRAFT,
        current_wave=0,
        created_at=now,
        created_by=actor,
        updated_at=now,
        waves=[
            RolloutWave(index=i, state=WaveState.PENDING, gates=[])
            for i in range(len(spec.policy.waves))
        ],
    )
    session.add(rollout)
    session.flush()
    audit_change(session, rollout, "rollout.create", actor, now, before=None)
    session.commit()
    return rollout


def start_rollout(*, session: Session, rollout_id: str, actor: str, now: float) -> Rollout:
    """Plan the waves over the group as it is now; the next tick notifies wave 1."""
    rollout = get_rollout(session=session, rollout_id=rollout_id)
    _require(rollout, "start", RolloutState.DRAFT)
    before = snapshot(rollout)
    policy = policy_of(rollout)
    version = _approved_version(session, rollout.model_name, rollout.version)
    _, members = _group_devices(session, rollout.group_name)
    _check_profiles(version, members)
    _check_no_overlap(session, rollout.model_name, [d.id for d in members], own=rollout.id)
    waves = plan([d.id for d in members], policy, rollout.id)
    by_id = {d.id: d for d in members}
    for index, wave in enumerate(waves):
        for device_id in wave:
            session.add(deployments.enrol(rollout, version, by_id[device_id], wave=index, now=now))
    rollout.state = (
        RolloutState.RUNNING if is_open(policy.maintenance, now) else RolloutState.SCHEDULED
    )
    rollout.active_key = f"{rollout.group_id}:{rollout.model_id}"
    rollout.started_at = now
    rollout.updated_at = now
    audit_change(session, rollout, "rollout.start", actor, now, before=before)
    try:
        session.commit()
    except IntegrityError as err:
        session.rollback()
        raise ConflictError(
            f"group {rollout.group_name!r} already has an active rollout of {rollout.model_name!r}",
            reason="overlapping_rollout",
        ) from err
    return rollout


def pause_rollout(
    *, session: Session, rollout_id: str, actor: str, now: float, reason: str | None = None
) -> Rollout:
    rollout = get_rollout(session=session, rollout_id=rollout_id)
    _require(rollout, "pause", RolloutState.RUNNING, RolloutState.SCHEDULED)
    before = snapshot(rollout)
    rollout.state = RolloutState.PAUSED
    rollout.reason = reason or f"paused by {actor}"
    rollout.updated_at = now
    audit_change(session, rollout, "rollout.pause", actor, now, before=before)
    session.commit()
    return rollout


def resume_rollout(*, session: Session, rollout_id: str, actor: str, now: float) -> Rollout:
    rollout = get_rollout(session=session, rollout_id=rollout_id)
    _require(rollout, "resume", RolloutState.PAUSED)
    before = snapshot(rollout)
    rollout.state = RolloutState.RUNNING
    rollout.reason = None
    rollout.updated_at = now
    wave = rollout.waves[rollout.current_wave]
    if wave.state == WaveState.BREACHED:
        # The operator looked at the breach and chose to go on: judge the wave afresh.
        wave.state = WaveState.RUNNING
        wave.soak_started_at = None
        wave.reason = None
    audit_change(session, rollout, "rollout.resume", actor, now, before=before)
    session.commit()
    return rollout


def approve_wave(*, session: Session, rollout_id: str, actor: str, now: float) -> Rollout:
    """Let the next wave start; only a wave that finished and waits for approval can be."""
    rollout = get_rollout(session=session, rollout_id=rollout_id)
    _require(rollout, "approve", RolloutState.RUNNING, RolloutState.PAUSED)
    wave = rollout.waves[rollout.current_wave]
    if wave.state != WaveState.AWAITING_APPROVAL:
        raise ConflictError(
            f"rollout {rollout.id} is not waiting for approval "
            f"(wave {rollout.current_wave + 1} is {wave.state})",
            reason="not_awaiting_approval",
        )
    before = snapshot(rollout)
    wave.state = WaveState.DONE
    wave.approved_by = actor
    rollout.current_wave += 1
    rollout.updated_at = now
    audit_change(session, rollout, "rollout.approve", actor, now, before=before)
    session.commit()
    return rollout


def abort_rollout(
    *,
    session: Session,
    rollout_id: str,
    signing: SigningService,
    actor: str,
    now: float,
    reason: str | None = None,
) -> Rollout:
    rollout = get_rollout(session=session, rollout_id=rollout_id)
    _require(rollout, "abort", *ACTIVE_ROLLOUT_STATES)
    before = snapshot(rollout)
    finish_aborted(
        session=session,
        rollout=rollout,
        signing=signing,
        actor=actor,
        now=now,
        reason=reason or f"aborted by {actor}",
    )
    audit_change(session, rollout, "rollout.abort", actor, now, before=before)
    session.commit()
    return rollout


def finish_aborted(
    *,
    session: Session,
    rollout: Rollout,
    signing: SigningService,
    actor: str,
    now: float,
    reason: str,
) -> None:
    """Abort: stop notifying, and with the rollback policy send touched devices back.

    Touched devices are those already notified. Going back is a new signed
    version carrying the previous bytes (devices refuse lower versions); a
    device that ran nothing of this model before has its deployment withdrawn.
    Devices never notified keep what they run and never hear of this rollout.
    """
    policy = policy_of(rollout)
    rollout.state = RolloutState.ABORTED
    rollout.active_key = None
    rollout.reason = reason[:500]
    rollout.finished_at = now
    rollout.updated_at = now
    for wave in rollout.waves:
        if wave.state not in (WaveState.DONE, WaveState.PENDING):
            wave.state = WaveState.BREACHED
            wave.finished_at = now
    touched = session.scalars(
        select(RolloutDevice).where(
            RolloutDevice.rollout_id == rollout.id,
            RolloutDevice.notified_at.is_not(None),
        )
    ).all()
    if policy.abort_mode is AbortMode.ROLLBACK and touched:
        deployments.roll_back(
            session=session,
            rollout=rollout,
            touched=touched,
            signing=signing,
            actor=actor,
            now=now,
        )
    pending = DeviceRolloutState.PENDING.value
    for device in session.scalars(
        select(RolloutDevice).where(
            RolloutDevice.rollout_id == rollout.id, RolloutDevice.state == pending
        )
    ):
        device.state = DeviceRolloutState.SKIPPED
        device.reason = "rollout aborted before its wave"
        device.updated_at = now


def _require(rollout: Rollout, action: str, *states: RolloutState) -> None:
    if rollout.state not in states:
        allowed = " or ".join(s.value for s in states)
        raise ConflictError(
            f"cannot {action} rollout {rollout.id}: it is {rollout.state} (needs {allowed})",
            reason="wrong_rollout_state",
        )


def audit_change(
    session: Session,
    rollout: Rollout,
    action: str,
    actor: str,
    now: float,
    *,
    before: dict[str, Any] | None,
) -> None:
    audit.record(
        session=session,
        actor=actor,
        action=action,
        target_type="rollout",
        target_id=rollout.id,
        now=now,
        before=before,
        after=snapshot(rollout),
    )
