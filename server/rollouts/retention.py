"""Which artifacts the broker keeps as retained chunks: those some device still has to fetch.

An artifact is needed while a device is told to run it (a deployment) and
does not say it runs that deployment yet (its retained state lists the
active slot's model and version). Version, not bytes: a rollback ships the
bytes a device still serves under a higher version, and the agent fetches
them again like any other. That covers a device that is offline for a week:
the chunks wait for it. Once nobody needs an artifact its chunks are cleared
from the broker, which would otherwise keep every model ever shipped in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import Artifact, Device, DeviceDeployment, RetainedArtifact
from edgefleet.server.rollouts import delivery

log = logging.getLogger(__name__)


def _runs(running: Iterable[Any], model: str, version: int) -> bool:
    return any(
        isinstance(slot, dict)
        and slot.get("active")
        and slot.get("model") == model
        and slot.get("version") == version
        for slot in running
    )


def needed(session: Session) -> dict[str, tuple[int, int]]:
    """sha256 -> (chunk size, chunk count) of every artifact some device still has to fetch.

    Manifests are read once per needed artifact, not once per device: the
    rollout tick runs this every few seconds over the whole fleet.
    """
    rows = session.execute(
        select(
            Artifact.id,
            Artifact.sha256,
            Device.running,
            DeviceDeployment.model,
            DeviceDeployment.version,
        )
        .join(DeviceDeployment, DeviceDeployment.artifact_id == Artifact.id)
        .join(Device, Device.id == DeviceDeployment.device_id)
    ).all()
    wanted: dict[str, int] = {}
    for artifact_id, sha256, running, model, version in rows:
        if sha256 not in wanted and not _runs(running or (), model, version):
            wanted[sha256] = artifact_id
    if not wanted:
        return {}
    manifests = session.execute(
        select(Artifact.sha256, Artifact.manifest).where(Artifact.id.in_(wanted.values()))
    ).all()
    found: dict[str, tuple[int, int]] = {}
    for sha256, manifest in manifests:
        spec = manifest["signed"]["artifact"]
        found[sha256] = (int(spec["chunk_size"]), int(spec["chunk_count"]))
    return found


def sync(
    *,
    sessions: sessionmaker[Session],
    publisher: delivery.Publisher,
    store: ArtifactStore,
    now: float,
    again: bool = False,
) -> None:
    """Publish what is needed and not retained, clear what is retained and not needed;
    with ``again``, publish what is needed even if it was retained (the broker may have
    lost it).

    Each publish or clear is recorded right after the broker acknowledged it,
    so a failure half-way leaves the table true to the broker.
    """
    with sessions() as session:
        wanted = needed(session)
        held = {r.sha256: r for r in session.scalars(select(RetainedArtifact))}
        for sha256, (chunk_size, _) in wanted.items():
            if sha256 in held and not again:
                continue
            count = delivery.publish_artifact(publisher, store, sha256, chunk_size)
            row = held.get(sha256)
            if row is None:
                session.add(
                    RetainedArtifact(
                        sha256=sha256, chunk_size=chunk_size, chunk_count=count, published_at=now
                    )
                )
            else:
                row.chunk_size, row.chunk_count, row.published_at = chunk_size, count, now
            session.commit()
            log.info("artifact %s: %d chunks retained on the broker", sha256[:12], count)
        for sha256, row in held.items():
            if sha256 in wanted:
                continue
            delivery.clear_artifact(publisher, sha256, row.chunk_count)
            session.delete(row)
            session.commit()
            log.info("artifact %s: chunks cleared from the broker", sha256[:12])
