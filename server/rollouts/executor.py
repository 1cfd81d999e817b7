"""The rollout tick: apply device events, move waves on, publish what changed.

APScheduler calls :meth:`RolloutExecutor.tick` every few seconds. Each
rollout advances in its own transaction from what the database says, so a
server restart picks up exactly where the last committed tick left off.
Events are applied once (a cursor over ``device_events.id``) through an
idempotent transition table, so a redelivered event changes nothing.

Messages go out after the commit: desired revisions still ahead of the
broker's copy, then artifact chunks needed by devices that do not run them
yet. While the broker is unreachable the tick changes nothing (no device
times out for a silence that is the broker's), and the time it was down is
added to every running clock when it is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server import groups, registry
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import (
    Device,
    DeviceEvent,
    Rollout,
    RolloutDevice,
    RolloutState,
    RolloutWave,
    WaveState,
)
from edgefleet.server.errors import BrokerError, ServerError
from edgefleet.server.rollouts import delivery, deployments, retention, service
from edgefleet.server.rollouts.gates import (
    DeviceRolloutState,
    Verdict,
    device_state_after,
    evaluate,
)
from edgefleet.server.rollouts.planner import plan
from edgefleet.server.rollouts.policy import OfflinePolicy, RolloutPolicy
from edgefleet.server.rollouts.stats import wave_stats
from edgefleet.server.rollouts.window import is_open
from edgefleet.server.signing import SigningService
from edgefleet.server.states import DeviceState

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "edgefleet"
EVENT_BATCH = 5000
DESIRED_BATCH = 1000
WAITING = (DeviceRolloutState.NOTIFIED.value, DeviceRolloutState.IN_PROGRESS.value)


class RolloutExecutor:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        publisher: delivery.Publisher,
        store: ArtifactStore,
        signing: SigningService,
        clock: Callable[[], float],
        connected: Callable[[], bool],
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._store = store
        self._signing = signing
        self._clock = clock
        self._connected = connected
        self._broker_lost = False
        """The broker was seen unreachable and what it retains is not known to be back."""

    def tick(self) -> None:
        """One pass over every active rollout, then publishing; errors are logged, not raised
        (the scheduler calls again in a few seconds)."""
        broker_up = self._connected()
        self._broker_lost = self._broker_lost or not broker_up
        with self._sessions() as session:
            ids = session.scalars(
                select(Rollout.id).where(
                    Rollout.state.in_([RolloutState.SCHEDULED, RolloutState.RUNNING])
                )
            ).all()
        for rollout_id in ids:
            try:
                self.advance(rollout_id, broker_up=broker_up)
            except ServerError:
                log.exception("rollout %s: tick failed", rollout_id)
        if broker_up and self.publish(again=self._broker_lost):
            self._broker_lost = False

    def advance(self, rollout_id: str, *, broker_up: bool) -> None:
        now = self._clock()
        with self._sessions() as session:
            rollout = session.get(Rollout, rollout_id)
            if rollout is None:
                return
            if not broker_up:
                if rollout.broker_down_since is None:
                    rollout.broker_down_since = now
                    log.warning("rollout %s: broker unreachable, progress held", rollout_id)
                    session.commit()
                return
            if rollout.broker_down_since is not None:
                _resume_clocks(session, rollout, now - rollout.broker_down_since)
            _apply_events(session, rollout, now)
            policy = service.policy_of(rollout)
            if rollout.state == RolloutState.SCHEDULED and is_open(policy.maintenance, now):
                rollout.state = RolloutState.RUNNING
            if rollout.state == RolloutState.RUNNING:
                _enrol_joiners(session, rollout, policy, now)
                self._drive(session, rollout, policy, now)
            rollout.updated_at = now
            session.commit()

    def _drive(self, session: Session, rollout: Rollout, policy: RolloutPolicy, now: float) -> None:
        # A wave that finishes can let the next one start in the same tick.
        for _ in range(len(rollout.waves) + 1):
            if rollout.state != RolloutState.RUNNING:
                return
            wave = rollout.waves[rollout.current_wave]
            if wave.state == WaveState.DONE:  # approved: approve_wave moved current_wave on
                return
            if wave.state == WaveState.PENDING:
                if not is_open(policy.maintenance, now):
                    return
                _start_wave(session, rollout, wave, policy, now)
            if wave.state not in (WaveState.RUNNING, WaveState.SOAKING):
                return
            devices = _wave_devices(session, rollout, wave.index)
            _time_out(session, devices, policy, wave.index, now)
            decision = evaluate(wave_stats(session, rollout, wave, devices, now), policy)
            wave.gates = [
                {"name": g.name, "value": g.value, "limit": g.limit, "status": g.status.value}
                for g in decision.gates
            ]
            wave.reason = decision.reason
            if decision.verdict is Verdict.START_SOAK:
                wave.state = WaveState.SOAKING
                wave.soak_started_at = now
                return
            if decision.verdict is Verdict.ADVANCE:
                if not _finish_wave(session, rollout, wave, policy, now):
                    return
                continue
            if decision.verdict is Verdict.WAIT:
                return
            log.warning("rollout %s: %s (%s)", rollout.id, decision.verdict.value, decision.reason)
            if decision.verdict is Verdict.PAUSE:
                before = service.snapshot(rollout)
                wave.state = WaveState.BREACHED
                rollout.state = RolloutState.PAUSED
                rollout.reason = decision.reason[:500]
                service.audit_change(
                    session, rollout, "rollout.pause", SYSTEM_ACTOR, now, before=before
                )
            elif decision.verdict is Verdict.ABORT:
                before = service.snapshot(rollout)
                service.finish_aborted(
                    session=session,
                    rollout=rollout,
                    signing=self._signing,
                    actor=SYSTEM_ACTOR,
                    now=now,
                    reason=decision.reason,
                )
                service.audit_change(
                    session, rollout, "rollout.abort", SYSTEM_ACTOR, now, before=before
                )
            return

    def publish(self, *, again: bool = False) -> bool:
        """Desired revisions ahead of the broker's, then the chunks devices still need;
        whether the broker took it all.

        ``again`` after the broker was unreachable: it may have restarted without
        its retained messages (a crash, or no persistence), and a device that
        had not fetched its ``desired`` or chunks yet would wait for them forever.
        So every device's current ``desired`` and every needed artifact go out
        once more; an agent ignores a revision it has handled.
        """
        try:
            if again:
                with self._sessions() as session:
                    deployments.mark_unpublished(session)
                    session.commit()
                log.info("broker back: republishing every desired and needed artifact")
            self._publish_desired()
            retention.sync(
                sessions=self._sessions,
                publisher=self._publisher,
                store=self._store,
                now=self._clock(),
                again=again,
            )
        except BrokerError as err:
            log.warning("publishing held until the broker answers: %s", err)
            return False
        return True

    def _publish_desired(self) -> None:
        trust = self._signing.trust_bundle()
        while True:
            with self._sessions() as session:
                pending = deployments.pending_desired(session, limit=DESIRED_BATCH)
                if not pending:
                    return
                now = self._clock()
                delivery.publish_desired(
                    self._publisher,
                    {
                        item.device_id: delivery.build_desired(
                            revision=item.revision,
                            deployments=item.deployments,
                            trust=trust,
                            now=now,
                        )
                        for item in pending
                    },
                )
                deployments.mark_published(session, pending, now=now)
                session.commit()
            if len(pending) < DESIRED_BATCH:
                return


def _wave_devices(session: Session, rollout: Rollout, wave: int) -> Sequence[RolloutDevice]:
    return session.scalars(
        select(RolloutDevice)
        .where(RolloutDevice.rollout_id == rollout.id, RolloutDevice.wave == wave)
        .order_by(RolloutDevice.device_id)
    ).all()


def _apply_events(session: Session, rollout: Rollout, now: float) -> None:
    while True:
        events = session.scalars(
            select(DeviceEvent)
            .where(
                DeviceEvent.rollout_id == rollout.id,
                DeviceEvent.id > rollout.event_cursor,
            )
            .order_by(DeviceEvent.id)
            .limit(EVENT_BATCH)
        ).all()
        wanted = {e.device_id for e in events if e.version == rollout.version}
        devices = {
            d.device_id: d
            for d in session.scalars(
                select(RolloutDevice).where(
                    RolloutDevice.rollout_id == rollout.id, RolloutDevice.device_id.in_(wanted)
                )
            )
        }
        for event in events:
            rollout.event_cursor = event.id
            if event.version != rollout.version:
                continue  # a rollback's own version, or a stale deployment
            device = devices.get(event.device_id)
            if device is None:
                continue
            state = device_state_after(DeviceRolloutState(device.state), event.kind)
            if state.value != device.state:
                device.state = state
                device.updated_at = now
                if event.reason:
                    device.reason = event.reason[:500]
        # Each batch with its cursor: one transaction across every event of a wave of
        # thousands held SQLite's write lock past the ingest's busy timeout.
        session.commit()
        if len(events) < EVENT_BATCH:
            return


def _resume_clocks(session: Session, rollout: Rollout, outage: float) -> None:
    """The broker was down for ``outage`` seconds: no device could answer, no wave could soak."""
    session.execute(
        update(RolloutDevice)
        .where(RolloutDevice.rollout_id == rollout.id, RolloutDevice.state.in_(WAITING))
        .values(notified_at=RolloutDevice.notified_at + outage)
    )
    wave = rollout.waves[rollout.current_wave]
    if wave.soak_started_at is not None:
        wave.soak_started_at += outage
    log.info("rollout %s: broker back after %.0f s, clocks moved on", rollout.id, outage)
    rollout.broker_down_since = None


def _enrol_joiners(session: Session, rollout: Rollout, policy: RolloutPolicy, now: float) -> None:
    """Devices that joined the group since the start go to the last wave (as the planner says)."""
    group = groups.get_group(session=session, name=rollout.group_name)
    members = groups.members_of(session=session, group=group)
    enrolled = dict(
        session.execute(
            select(RolloutDevice.device_id, RolloutDevice.wave).where(
                RolloutDevice.rollout_id == rollout.id
            )
        ).all()
    )
    joined = [m for m in members if m not in enrolled]
    if not joined:
        return
    waves = plan(members, policy, rollout.id, existing=enrolled)
    version = registry.get_version(
        session=session, name=rollout.model_name, version=rollout.version
    )
    last = len(rollout.waves) - 1
    for device in session.scalars(select(Device).where(Device.id.in_(joined))):
        wave = next(i for i, ids in enumerate(waves) if device.id in ids)
        if (
            device.revoked_at is not None
            or deployments.artifact_for(version, device.profile) is None
        ):
            continue
        enrolment = deployments.enrol(rollout, version, device, wave=wave, now=now)
        session.add(enrolment)
        if wave == last and rollout.waves[last].state in (WaveState.RUNNING, WaveState.SOAKING):
            deployments.notify(
                session,
                rollout=rollout,
                version=version,
                device=enrolment,
                shadow=policy.shadow,
                now=now,
            )


def _start_wave(
    session: Session, rollout: Rollout, wave: RolloutWave, policy: RolloutPolicy, now: float
) -> None:
    version = registry.get_version(
        session=session, name=rollout.model_name, version=rollout.version
    )
    devices = _wave_devices(session, rollout, wave.index)
    online = set(
        session.scalars(
            select(Device.id).where(
                Device.id.in_([d.device_id for d in devices]), Device.state == DeviceState.ONLINE
            )
        )
    )
    for device in devices:
        if device.state != DeviceRolloutState.PENDING:
            continue
        deployments.notify(
            session, rollout=rollout, version=version, device=device, shadow=policy.shadow, now=now
        )
        if device.device_id not in online and policy.offline is OfflinePolicy.SKIP:
            # It still gets the retained desired and converges when back; it just does not count.
            device.state = DeviceRolloutState.SKIPPED
            device.reason = "offline when its wave started"
    wave.state = WaveState.RUNNING
    wave.started_at = now
    log.info("rollout %s: wave %d started on %d devices", rollout.id, wave.index + 1, len(devices))


def _time_out(
    session: Session,
    devices: Sequence[RolloutDevice],
    policy: RolloutPolicy,
    wave: int,
    now: float,
) -> None:
    limit = policy.waves[wave].device_timeout_seconds
    late = [
        d
        for d in devices
        if d.state in WAITING and d.notified_at is not None and now - d.notified_at > limit
    ]
    if not late:
        return
    offline: set[str] = set()
    if policy.offline is OfflinePolicy.WAIT:
        offline = set(
            session.scalars(
                select(Device.id).where(
                    Device.id.in_([d.device_id for d in late]), Device.state != DeviceState.ONLINE
                )
            )
        )
    for device in late:
        if device.device_id in offline:
            continue  # policy: wait for it; the retained desired reaches it when it is back
        device.state = DeviceRolloutState.TIMED_OUT
        device.reason = f"no answer within {limit:g} s"
        device.updated_at = now


def _finish_wave(
    session: Session, rollout: Rollout, wave: RolloutWave, policy: RolloutPolicy, now: float
) -> bool:
    """True when the next wave may start right away."""
    wave.finished_at = now
    if wave.index == len(rollout.waves) - 1:
        wave.state = WaveState.DONE
        before = service.snapshot(rollout)
        rollout.state = RolloutState.COMPLETED
        rollout.active_key = None
        rollout.finished_at = now
        service.audit_change(session, rollout, "rollout.complete", SYSTEM_ACTOR, now, before=before)
        return False
    if policy.approval_between_waves:
        wave.state = WaveState.AWAITING_APPROVAL
        return False
    wave.state = WaveState.DONE
    rollout.current_wave += 1
    return True
