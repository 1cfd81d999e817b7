"""Should this device install this manifest? One decision, all the rules.

Run before a single artifact byte is downloaded, so a device never spends
bandwidth or flash on something it would refuse; :func:`check_artifact` then
guards the bytes once they are assembled.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.shared.antirollback import AntiRollbackState, Verdict
from edgefleet.shared.errors import ArtifactTooLargeError, ProfileMismatchError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore


@dataclass(frozen=True, slots=True)
class Admission:
    manifest: Manifest
    verdict: Verdict

    @property
    def is_new(self) -> bool:
        return self.verdict is Verdict.NEW


def admit(
    envelope: SignedEnvelope,
    *,
    trust: TrustStore,
    installed: AntiRollbackState,
    hardware_profile: str,
    max_artifact_bytes: int,
    now: float,
) -> Admission:
    """Verify trust, then fitness for this device, then version order.

    Raises a :class:`~edgefleet.shared.errors.TrustError` or
    :class:`~edgefleet.shared.errors.UpdateRejectedError` naming the first
    rule broken; never changes ``trust`` or ``installed``.
    """
    manifest = trust.verify_manifest(envelope, now=now)
    if manifest.hardware_profile != hardware_profile:
        raise ProfileMismatchError(
            f"{manifest.model} v{manifest.version} is built for "
            f"{manifest.hardware_profile!r}, this device is {hardware_profile!r}"
        )
    if manifest.artifact.size > max_artifact_bytes:
        raise ArtifactTooLargeError(
            f"{manifest.model} v{manifest.version} declares {manifest.artifact.size} bytes, "
            f"this device accepts at most {max_artifact_bytes}"
        )
    return Admission(manifest, installed.check(manifest))
