"""The trust chain against the attacks a fleet will meet.

Every rejection asserts the specific error, its reason slug, and that neither
the trust store nor the anti-rollback state moved.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib

import pytest

from edgefleet.shared import errors
from edgefleet.shared.admission import admit
from edgefleet.shared.antirollback import AntiRollbackState, Verdict
from edgefleet.shared.manifest import check_artifact
from edgefleet.shared.signed import SignedEnvelope, sign
from edgefleet.shared.trust import TrustStore
from tests.shared.factories import (
    DAY,
    NOW,
    YEAR,
    Fleet,
    artifact_bytes,
    key,
    key_list_envelope,
    manifest,
    root_envelope,
)

MAX_BYTES = 10 * 1024 * 1024


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
def installed(fleet: Fleet) -> AntiRollbackState:
    """A device that runs vibration v3 (the default test manifest)."""
    accepted = admit(
        fleet.sign(manifest()),
        trust=fleet.store,
        installed=AntiRollbackState(),
        hardware_profile="rpi4",
        max_artifact_bytes=MAX_BYTES,
        now=NOW,
    )
    return AntiRollbackState().record(accepted.manifest)


def edited(envelope: SignedEnvelope, **changes: object) -> SignedEnvelope:
    """The same signatures over a body an attacker changed."""
    signed = copy.deepcopy(envelope.signed)
    for path, value in changes.items():
        node = signed
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return SignedEnvelope(signed=signed, signatures=envelope.signatures)


def rejects(
    fleet: Fleet,
    installed: AntiRollbackState,
    envelope: SignedEnvelope,
    error: type[errors.EdgefleetError],
    reason: str,
    *,
    now: float = NOW,
    profile: str = "rpi4",
) -> None:
    trust_before, state_before = fleet.store.to_bytes(), installed.to_bytes()
    with pytest.raises(error) as caught:
        admit(
            envelope,
            trust=fleet.store,
            installed=installed,
            hardware_profile=profile,
            max_artifact_bytes=MAX_BYTES,
            now=now,
        )
    assert type(caught.value) is error
    assert caught.value.reason == reason
    assert fleet.store.to_bytes() == trust_before
    assert installed.to_bytes() == state_before


def test_valid_newer_manifest_is_admitted(fleet: Fleet, installed: AntiRollbackState) -> None:
    result = admit(
        fleet.sign(manifest(version=4, artifact=b"v4" * 100)),
        trust=fleet.store,
        installed=installed,
        hardware_profile="rpi4",
        max_artifact_bytes=MAX_BYTES,
        now=NOW,
    )
    assert result.is_new
    assert result.manifest.version == 4
    moved = installed.record(result.manifest)
    assert moved.accepted["vibration"].version == 4
    assert installed.accepted["vibration"].version == 3


def test_tampered_artifact_hash_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    envelope = edited(fleet.sign(manifest(version=4)), artifact__sha256="0" * 64)
    rejects(fleet, installed, envelope, errors.SignatureError, "bad_signature")


def test_edited_manifest_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    envelope = edited(fleet.sign(manifest(version=4)), expires_at=NOW + 10 * YEAR)
    rejects(fleet, installed, envelope, errors.SignatureError, "bad_signature")


def test_reencoded_but_equal_manifest_still_verifies(fleet: Fleet) -> None:
    envelope = fleet.sign(manifest(version=4))
    reordered = SignedEnvelope(
        signed=dict(reversed(list(envelope.signed.items()))), signatures=envelope.signatures
    )
    assert fleet.store.verify_manifest(reordered, now=NOW).version == 4


def test_unknown_key_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    envelope = fleet.sign(manifest(version=4), key("stranger"))
    rejects(fleet, installed, envelope, errors.UnknownKeyError, "unknown_key")


def test_root_key_cannot_sign_manifests(fleet: Fleet, installed: AntiRollbackState) -> None:
    envelope = fleet.sign(manifest(version=4), fleet.roots[0])
    rejects(fleet, installed, envelope, errors.UnknownKeyError, "unknown_key")


def test_revoked_key_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    keys_v2 = key_list_envelope(
        2, fleet.signers[1:], 1, signed_by=fleet.roots[:2], revoked=fleet.signers[:1]
    )
    fleet.store = fleet.store.update_signing_keys(keys_v2, now=NOW)
    rejects(
        fleet,
        installed,
        fleet.sign(manifest(version=4), fleet.signers[0]),
        errors.RevokedKeyError,
        "revoked_key",
    )
    assert (
        fleet.store.verify_manifest(
            fleet.sign(manifest(version=4), fleet.signers[1]), now=NOW
        ).version
        == 4
    )


def test_expired_manifest_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    envelope = fleet.sign(manifest(version=4, expires_at=NOW + DAY))
    admit(
        envelope,
        trust=fleet.store,
        installed=installed,
        hardware_profile="rpi4",
        max_artifact_bytes=MAX_BYTES,
        now=NOW + DAY - 1,
    )
    rejects(fleet, installed, envelope, errors.ExpiredError, "expired", now=NOW + DAY)


def test_expired_signing_key_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    signer = fleet.signers[0]
    current = fleet.store.signing_keys
    assert current is not None
    keys_v2 = key_list_envelope(
        2, fleet.signers, 1, signed_by=fleet.roots[:2], key_expiry={current.keys[0].keyid: NOW + 10}
    )
    assert current.keys[0].keyid == keys_v2.signed["keys"][0]["keyid"]
    fleet.store = fleet.store.update_signing_keys(keys_v2, now=NOW)
    envelope = fleet.sign(manifest(version=4), signer)
    assert fleet.store.verify_manifest(envelope, now=NOW + 9).version == 4
    rejects(fleet, installed, envelope, errors.ExpiredError, "expired", now=NOW + 10)


def test_expired_key_list_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    rejects(
        fleet,
        installed,
        fleet.sign(manifest(version=4)),
        errors.ExpiredError,
        "expired",
        now=NOW + YEAR,
    )


def test_same_key_twice_does_not_meet_a_threshold_of_two(
    fleet: Fleet, installed: AntiRollbackState
) -> None:
    keys_v2 = key_list_envelope(2, fleet.signers, 2, signed_by=fleet.roots[:2])
    fleet.store = fleet.store.update_signing_keys(keys_v2, now=NOW)
    body = manifest(version=4)
    twice = fleet.sign(body, fleet.signers[0], fleet.signers[0])
    assert len(twice.signatures) == 2
    rejects(fleet, installed, twice, errors.ThresholdError, "threshold_not_met")
    two_keys = fleet.sign(body, fleet.signers[0], fleet.signers[1])
    assert fleet.store.verify_manifest(two_keys, now=NOW).version == 4


def test_one_good_and_one_forged_signature_do_not_meet_two(
    fleet: Fleet, installed: AntiRollbackState
) -> None:
    keys_v2 = key_list_envelope(2, fleet.signers, 2, signed_by=fleet.roots[:2])
    fleet.store = fleet.store.update_signing_keys(keys_v2, now=NOW)
    body = manifest(version=4)
    good = fleet.sign(body, fleet.signers[0])
    forged = fleet.sign(manifest(version=5), fleet.signers[1]).signatures[0]
    envelope = SignedEnvelope(signed=good.signed, signatures=(*good.signatures, forged))
    rejects(fleet, installed, envelope, errors.SignatureError, "bad_signature")


def test_lower_version_replay_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    rejects(fleet, installed, fleet.sign(manifest(version=2)), errors.RollbackError, "rollback")


def test_equal_version_same_hash_is_a_no_op(fleet: Fleet, installed: AntiRollbackState) -> None:
    """A retained ``desired`` redelivered on reconnect must not reinstall anything."""
    before = installed.to_bytes()
    result = admit(
        fleet.sign(manifest()),
        trust=fleet.store,
        installed=installed,
        hardware_profile="rpi4",
        max_artifact_bytes=MAX_BYTES,
        now=NOW,
    )
    assert result.verdict is Verdict.CURRENT
    with pytest.raises(errors.RollbackError):
        installed.record(result.manifest)
    assert installed.to_bytes() == before


def test_same_version_with_another_hash_is_refused(
    fleet: Fleet, installed: AntiRollbackState
) -> None:
    other = fleet.sign(manifest(artifact=b"evil" * 500))
    rejects(fleet, installed, other, errors.VersionConflictError, "version_conflict")


def test_wrong_hardware_profile_is_refused(fleet: Fleet, installed: AntiRollbackState) -> None:
    envelope = fleet.sign(manifest(version=4, profile="jetson-nano"))
    rejects(fleet, installed, envelope, errors.ProfileMismatchError, "wrong_profile")


def test_declared_size_over_the_device_limit_is_refused(
    fleet: Fleet, installed: AntiRollbackState
) -> None:
    envelope = fleet.sign(manifest(version=4, artifact=b"x" * (MAX_BYTES + 1)))
    rejects(fleet, installed, envelope, errors.ArtifactTooLargeError, "artifact_too_large")


def test_key_list_presented_as_manifest_is_refused(
    fleet: Fleet, installed: AntiRollbackState
) -> None:
    rejects(fleet, installed, fleet.keys_v1, errors.ManifestError, "wrong_type")


def test_manifest_before_any_key_list_is_refused(fleet: Fleet) -> None:
    bare = TrustStore.pin(fleet.root_v1)
    with pytest.raises(errors.UnknownKeyError):
        bare.verify_manifest(fleet.sign(manifest()), now=NOW)


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        pytest.param(artifact_bytes(), None, None, id="exact"),
        pytest.param(
            artifact_bytes()[:-1] + b"!",
            errors.ArtifactError,
            "sha256_mismatch",
            id="one-byte-flipped",
        ),
        pytest.param(artifact_bytes()[:-1], errors.ArtifactError, "size_mismatch", id="short"),
        pytest.param(
            artifact_bytes() + b"\0", errors.ArtifactTooLargeError, "artifact_too_large", id="long"
        ),
    ],
)
def test_check_artifact(data: bytes, error: type[Exception] | None, reason: str | None) -> None:
    body = manifest()
    digest = hashlib.sha256(data).hexdigest()
    if error is None:
        check_artifact(body, sha256=digest, size=len(data))
        return
    with pytest.raises(error) as caught:
        check_artifact(body, sha256=digest, size=len(data))
    assert type(caught.value) is error
    assert caught.value.reason == reason  # type: ignore[attr-defined]


# --- signing key list ------------------------------------------------------------------


def test_key_list_needs_the_root_threshold(fleet: Fleet) -> None:
    one_root = key_list_envelope(2, fleet.signers, 1, signed_by=fleet.roots[:1])
    with pytest.raises(errors.ThresholdError):
        fleet.store.update_signing_keys(one_root, now=NOW)


def test_key_list_signed_by_a_signing_key_is_refused(fleet: Fleet) -> None:
    self_promoted = key_list_envelope(
        2, [*fleet.signers, key("mallory")], 1, signed_by=fleet.signers
    )
    with pytest.raises(errors.UnknownKeyError):
        fleet.store.update_signing_keys(self_promoted, now=NOW)


def test_older_key_list_cannot_revive_a_revoked_key(fleet: Fleet) -> None:
    keys_v2 = key_list_envelope(
        2, fleet.signers[1:], 1, signed_by=fleet.roots[:2], revoked=fleet.signers[:1]
    )
    store = fleet.store.update_signing_keys(keys_v2, now=NOW)
    before = store.to_bytes()
    with pytest.raises(errors.RollbackError):
        store.update_signing_keys(fleet.keys_v1, now=NOW)
    assert store.to_bytes() == before


def test_same_key_list_again_is_a_no_op_but_a_different_one_conflicts(fleet: Fleet) -> None:
    assert fleet.store.update_signing_keys(fleet.keys_v1, now=NOW) is fleet.store
    other_v1 = key_list_envelope(1, fleet.signers[:2], 1, signed_by=fleet.roots[:2])
    with pytest.raises(errors.VersionConflictError):
        fleet.store.update_signing_keys(other_v1, now=NOW)


def test_expired_root_cannot_vouch_for_a_key_list(fleet: Fleet) -> None:
    short_root = root_envelope(1, fleet.roots, 2, expires_at=NOW + DAY)
    store = TrustStore.pin(short_root)
    keys = key_list_envelope(1, fleet.signers, 1, signed_by=fleet.roots[:2])
    with pytest.raises(errors.ExpiredError):
        store.update_signing_keys(keys, now=NOW + DAY)


# --- root rotation ---------------------------------------------------------------------


def test_root_rotation_signed_by_old_and_new_thresholds(fleet: Fleet) -> None:
    new_roots = [fleet.roots[2], key("root-3"), key("root-4")]
    v2 = root_envelope(2, new_roots, 2, signed_by=[*fleet.roots[:2], *new_roots[1:]])
    store = fleet.store.rotate_root(v2, now=NOW)
    assert store.root.version == 2
    keys_v2 = key_list_envelope(2, fleet.signers, 1, signed_by=new_roots[1:])
    updated = store.update_signing_keys(keys_v2, now=NOW).signing_keys
    assert updated is not None
    assert updated.version == 2
    with pytest.raises(errors.UnknownKeyError):
        store.update_signing_keys(
            key_list_envelope(3, fleet.signers, 1, signed_by=fleet.roots[:2]), now=NOW
        )


def test_root_rotation_that_skips_a_version_is_refused(fleet: Fleet) -> None:
    v3 = root_envelope(3, fleet.roots, 2)
    before = fleet.store.to_bytes()
    with pytest.raises(errors.RootRotationError) as caught:
        fleet.store.rotate_root(v3, now=NOW)
    assert caught.value.reason == "bad_root_rotation"
    assert fleet.store.to_bytes() == before


def test_root_rotation_without_the_old_threshold_is_refused(fleet: Fleet) -> None:
    new_roots = [key("root-3"), key("root-4")]
    v2 = root_envelope(2, new_roots, 2, signed_by=[*new_roots, fleet.roots[0]])
    before = fleet.store.to_bytes()
    with pytest.raises(errors.RootRotationError, match="old root's threshold"):
        fleet.store.rotate_root(v2, now=NOW)
    assert fleet.store.to_bytes() == before


def test_root_rotation_without_the_new_threshold_is_refused(fleet: Fleet) -> None:
    new_roots = [key("root-3"), key("root-4")]
    v2 = root_envelope(2, new_roots, 2, signed_by=[*fleet.roots[:2], new_roots[0]])
    with pytest.raises(errors.RootRotationError, match="new root's threshold"):
        fleet.store.rotate_root(v2, now=NOW)


def test_root_rotation_keeps_a_key_list_only_while_vouched_for(fleet: Fleet) -> None:
    same_holders = root_envelope(2, fleet.roots, 2)
    assert fleet.store.rotate_root(same_holders, now=NOW).signing_keys is not None
    new_roots = [key("root-3"), key("root-4")]
    replaced = root_envelope(2, new_roots, 2, signed_by=[*fleet.roots[:2], *new_roots])
    assert fleet.store.rotate_root(replaced, now=NOW).signing_keys is None


def test_pinned_root_must_sign_itself(fleet: Fleet) -> None:
    forged = sign(root_envelope(1, fleet.roots, 2).signed, [key("mallory")])
    with pytest.raises(errors.UnknownKeyError):
        TrustStore.pin(forged)


# --- persistence -----------------------------------------------------------------------


def test_trust_store_round_trips_and_rechecks_signatures(fleet: Fleet) -> None:
    data = fleet.store.to_bytes()
    assert TrustStore.from_bytes(data).to_bytes() == data
    key_list_expiry = f'"expires_at":{NOW + YEAR}'.encode()
    tampered = data.replace(key_list_expiry, f'"expires_at":{NOW + 9 * YEAR}'.encode())
    assert tampered != data
    with pytest.raises(errors.SignatureError):
        TrustStore.from_bytes(tampered)


def test_trust_store_refuses_a_swapped_key_list(fleet: Fleet) -> None:
    forged_keys = key_list_envelope(9, [key("mallory")], 1, signed_by=[key("mallory")])
    forged = TrustStore(fleet.root_v1, forged_keys).to_bytes()
    with pytest.raises(errors.UnknownKeyError):
        TrustStore.from_bytes(forged)


def test_anti_rollback_state_round_trips(installed: AntiRollbackState) -> None:
    data = installed.to_bytes()
    restored = AntiRollbackState.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored.accepted == dict(installed.accepted)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"models":[{"model":"a","version":0,"sha256":"' + b"0" * 64 + b'"}]}',
        b'{"models":[{"model":"a","version":1,"sha256":"xyz"}]}',
        b'{"models":['
        + b",".join([b'{"model":"a","version":1,"sha256":"' + b"0" * 64 + b'"}'] * 2)
        + b"]}",
    ],
    ids=["empty", "version-zero", "bad-sha", "duplicate-model"],
)
def test_corrupt_anti_rollback_state_is_refused(data: bytes) -> None:
    with pytest.raises(errors.MessageError):
        AntiRollbackState.from_bytes(data)


def test_manifest_fields_are_validated_on_construction() -> None:
    body = manifest()
    with pytest.raises(errors.MessageError, match="chunks"):
        dataclasses.replace(body.artifact, chunk_count=body.artifact.chunk_count + 1)
    with pytest.raises(errors.MessageError, match="expires before"):
        dataclasses.replace(body, expires_at=body.created_at)
