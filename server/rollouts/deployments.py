"""What each device should run, and the revision of its ``desired`` message.

A rollout never publishes directly: it changes a device's deployments and
bumps its desired revision in the same transaction as the rollout's own
state. The executor publishes every revision still ahead of what the broker
has, after the commit; so a crash or a broker outage between the two only
delays a message, and a restart cannot lose or double one (the agent ignores
a revision it has seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from edgefleet.server import registry
from edgefleet.server.db.models import (
    Artifact,
    DesiredState,
    Device,
    DeviceDeployment,
    ModelVersion,
    Rollout,
    RolloutDevice,
)
from edgefleet.server.rollouts.gates import DeviceRolloutState
from edgefleet.server.signing import SigningService
from edgefleet.shared import schema
from edgefleet.shared.messages import Deployment
from edgefleet.shared.signed import SignedEnvelope


def running_version(device: Device, model: str) -> int | None:
    """The version of ``model`` the device last said it serves (its retained state)."""
    for slot in device.running:
        if isinstance(slot, dict) and slot.get("model") == model and slot.get("active"):
            version = slot.get("version")
            return version if isinstance(version, int) else None
    return None


def artifact_for(version: ModelVersion, profile: str) -> Artifact | None:
    return next((a for a in version.artifacts if a.hardware_profile == profile), None)


def enrol(
    rollout: Rollout, version: ModelVersion, device: Device, *, wave: int, now: float
) -> RolloutDevice:
    artifact = artifact_for(version, device.profile)
    if artifact is None:  # the caller checked profiles; a device's profile changed since
        raise ValueError(f"no artifact for profile {device.profile!r}")
    return RolloutDevice(
        rollout_id=rollout.id,
        device_id=device.id,
        wave=wave,
        state=DeviceRolloutState.PENDING,
        profile=device.profile,
        artifact_sha256=artifact.sha256,
        previous_version=running_version(device, rollout.model_name),
        updated_at=now,
    )


def _bump(session: Session, device_id: str) -> None:
    desired = session.get(DesiredState, device_id)
    if desired is None:
        session.add(DesiredState(device_id=device_id, revision=1, published_revision=0))
    else:
        desired.revision += 1


def deploy(
    session: Session,
    *,
    device_id: str,
    artifact: Artifact,
    version: int,
    model: str,
    rollout_id: str | None,
    shadow: bool,
    now: float,
) -> None:
    current = session.get(DeviceDeployment, (device_id, model))
    if current is None:
        session.add(
            DeviceDeployment(
                device_id=device_id,
                model=model,
                version=version,
                artifact_id=artifact.id,
                rollout_id=rollout_id,
                shadow=shadow,
                updated_at=now,
            )
        )
    else:
        current.version = version
        current.artifact_id = artifact.id
        current.rollout_id = rollout_id
        current.shadow = shadow
        current.updated_at = now
    _bump(session, device_id)


def withdraw(session: Session, *, device_id: str, model: str) -> None:
    current = session.get(DeviceDeployment, (device_id, model))
    if current is not None:
        session.delete(current)
        _bump(session, device_id)


def notify(
    session: Session,
    *,
    rollout: Rollout,
    version: ModelVersion,
    device: RolloutDevice,
    shadow: bool,
    now: float,
) -> None:
    artifact = artifact_for(version, device.profile)
    if artifact is None:
        device.state = DeviceRolloutState.SKIPPED
        device.reason = f"{rollout.model_name} v{rollout.version} has no {device.profile} artifact"
        device.updated_at = now
        return
    deploy(
        session,
        device_id=device.device_id,
        artifact=artifact,
        version=rollout.version,
        model=rollout.model_name,
        rollout_id=rollout.id,
        shadow=shadow,
        now=now,
    )
    device.state = DeviceRolloutState.NOTIFIED
    device.notified_at = now
    device.updated_at = now


def roll_back(
    *,
    session: Session,
    rollout: Rollout,
    touched: Sequence[RolloutDevice],
    signing: SigningService,
    actor: str,
    now: float,
) -> None:
    """Send every touched device the bytes it ran before, as a new, higher version."""
    reissued: dict[int, ModelVersion] = {}
    for previous in sorted({d.previous_version for d in touched if d.previous_version}):
        reissued[previous] = registry.reissue_version(
            session=session,
            name=rollout.model_name,
            version=previous,
            signing=signing,
            note=f"rollback of rollout {rollout.id} to the bytes of v{previous}",
            actor=actor,
            now=now,
        )
    if reissued:
        rollout.rollback_version = max(v.version for v in reissued.values())
    for device in touched:
        target = reissued.get(device.previous_version or 0)
        artifact = None if target is None else artifact_for(target, device.profile)
        if target is None or artifact is None:
            withdraw(session, device_id=device.device_id, model=rollout.model_name)
            device.reason = "rolled back: deployment withdrawn (no earlier version to return to)"
        else:
            deploy(
                session,
                device_id=device.device_id,
                artifact=artifact,
                version=target.version,
                model=rollout.model_name,
                rollout_id=rollout.id,
                shadow=False,
                now=now,
            )
            device.reason = (
                f"rolled back to v{target.version} (bytes of v{device.previous_version})"
            )
        device.state = DeviceRolloutState.REVERTED
        device.updated_at = now


@dataclass(frozen=True, slots=True)
class PendingDesired:
    device_id: str
    revision: int
    deployments: tuple[Deployment, ...]


def pending_desired(session: Session, *, limit: int) -> list[PendingDesired]:
    """Devices whose desired revision is ahead of what was published, with their deployments."""
    states = session.scalars(
        select(DesiredState)
        .where(DesiredState.revision > DesiredState.published_revision)
        .order_by(DesiredState.device_id)
        .limit(limit)
    ).all()
    if not states:
        return []
    rows = session.execute(
        select(DeviceDeployment, Artifact.manifest)
        .join(Artifact, Artifact.id == DeviceDeployment.artifact_id)
        .where(DeviceDeployment.device_id.in_([s.device_id for s in states]))
        .order_by(DeviceDeployment.device_id, DeviceDeployment.model)
    ).all()
    by_device: dict[str, list[Deployment]] = {}
    for deployment, manifest in rows:
        by_device.setdefault(deployment.device_id, []).append(
            Deployment(
                model=deployment.model,
                manifest=schema.from_json(SignedEnvelope, manifest),
                shadow=deployment.shadow,
                rollout_id=deployment.rollout_id,
            )
        )
    return [
        PendingDesired(s.device_id, s.revision, tuple(by_device.get(s.device_id, ())))
        for s in states
    ]


def mark_unpublished(session: Session) -> None:
    """Every device's current revision is to be published again (the broker lost it)."""
    session.execute(update(DesiredState).values(published_revision=0))


def mark_published(session: Session, published: Sequence[PendingDesired], *, now: float) -> None:
    for item in published:
        state = session.get(DesiredState, item.device_id)
        if state is not None and state.published_revision < item.revision:
            state.published_revision = item.revision
            state.published_at = now
