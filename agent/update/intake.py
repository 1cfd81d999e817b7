"""From a ``desired`` to the signals that start (or refuse) an update.

Everything a device checks before it fetches a byte happens here, with the
shared verifiers: root rotations and the signing-key list first, then the
manifest (:func:`~edgefleet.shared.admission.admit`: signature, expiry,
hardware profile, size, version order). A refusal carries the shared error's
``reason`` slug first (``"bad_signature: ..."``), so gates can count it and
people can read it. The trust store and the anti-rollback record live here
too, persisted only when they change.

One model per device: a ``desired`` naming several models installs the
first and refuses the rest, with a reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgefleet.agent.storage import Storage
from edgefleet.agent.update.machine import Refuse, Seen, Signal, Start
from edgefleet.agent.update.state import Candidate, other_slot, reason_of
from edgefleet.shared.admission import Admission, admit
from edgefleet.shared.agent_config import UpdateSection
from edgefleet.shared.antirollback import Verdict
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Deployment, Desired, Slot
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a manifest is checked against, and how cautious the update is."""

    profile: str
    max_artifact_bytes: int
    rules: UpdateSection


class Intake:
    def __init__(self, storage: Storage, facts: DeviceFacts, pinned_root: SignedEnvelope) -> None:
        self._storage = storage
        self.facts = facts
        self._trust = storage.read_trust(pinned_root)
        self._installed = storage.read_antirollback()

    @property
    def trust(self) -> TrustStore:
        return self._trust

    def decide(self, desired: Desired, *, active: Slot | None, now: float) -> list[Signal]:
        """The signals for ``desired``: a start, refusals, or a plain ``Seen``."""
        revision = desired.revision
        try:
            self._refresh_trust(desired, now)
        except EdgefleetError as err:
            refused: list[Signal] = [
                _refusal(d, reason_of(err), revision) for d in desired.deployments
            ]
            return refused or [Seen(revision)]
        if not desired.deployments:
            log.info("desired revision %d names no model; keeping what runs", revision)
            return [Seen(revision)]
        first, *others = desired.deployments
        reason = f"one_model_per_device: this agent serves {first.model} only"
        signals: list[Signal] = [_refusal(other, reason, revision) for other in others]
        signals.append(self._decide_one(first, revision, active, now))
        return signals

    def admit(self, envelope: SignedEnvelope, now: float) -> Admission:
        """Verify ``envelope`` again (a resumed update re-checks what it installs)."""
        return admit(
            envelope,
            trust=self._trust,
            installed=self._installed,
            hardware_profile=self.facts.profile,
            max_artifact_bytes=self.facts.max_artifact_bytes,
            now=now,
        )

    def record(self, manifest: Manifest) -> None:
        """Accept ``manifest``'s version for good: older ones are refused from now on."""
        if self._installed.check(manifest) is Verdict.CURRENT:
            return
        installed = self._installed.record(manifest)
        self._storage.write_antirollback(installed)
        self._installed = installed

    def _decide_one(
        self, deployment: Deployment, revision: int, active: Slot | None, now: float
    ) -> Signal:
        try:
            admission = self.admit(deployment.manifest, now)
        except EdgefleetError as err:
            return _refusal(deployment, reason_of(err), revision)
        manifest = admission.manifest
        if not admission.is_new:
            log.info("%s v%d is already installed", manifest.model, manifest.version)
            return Seen(revision)
        candidate = Candidate(
            model=manifest.model,
            version=manifest.version,
            sha256=manifest.artifact.sha256,
            slot=other_slot(active),
            manifest=deployment.manifest,
            rollout_id=deployment.rollout_id,
            shadow=deployment.shadow,
        )
        return Start(candidate, active=active, revision=revision)

    def _refresh_trust(self, desired: Desired, now: float) -> None:
        """Apply root rotations (one version at a time) and the key list; persist a change."""
        store = self._trust
        for root in desired.roots:
            version = root.signed.get("version")
            if isinstance(version, int) and version <= store.root.version:
                continue
            store = store.rotate_root(root, now=now)
        if desired.signing_keys is not None:
            store = store.update_signing_keys(desired.signing_keys, now=now)
        if store != self._trust:
            self._storage.write_trust(store)
            self._trust = store


def _refusal(deployment: Deployment, reason: str, revision: int) -> Refuse:
    """A refusal names the version the manifest claims (1 when it is unreadable)."""
    claimed = deployment.manifest.signed.get("version")
    version = 1
    if isinstance(claimed, int) and not isinstance(claimed, bool) and 1 <= claimed <= 2**53:
        version = claimed
    return Refuse(deployment.model, version, reason, deployment.rollout_id, revision)
