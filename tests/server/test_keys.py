"""Key management on real directories, checked by the verifier the agents run.

Every envelope the server publishes is fed to a :class:`TrustStore` the way a
device receives it: pin a root, rotate through the chain one step at a time,
take the key list, verify manifests.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from edgefleet.server import atomic
from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.server.keys import (
    KeyInfo,
    SigningService,
    init_keys,
    rotate_root,
    rotate_signing_key,
)
from edgefleet.shared.errors import (
    ExpiredError,
    RevokedKeyError,
    RootRotationError,
)
from edgefleet.shared.messages import Desired, decode_as, encode
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore, parse_root, parse_signing_keys
from tests.shared.factories import DAY, NOW, manifest

START = NOW - 10 * DAY
"""When the keys are made; manifests from the factories are created at NOW - 1 day."""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "root", tmp_path / "signing"


def init(dirs: tuple[Path, Path], **kwargs) -> KeyInfo:
    root_dir, signing_dir = dirs
    return init_keys(root_dir=root_dir, signing_dir=signing_dir, now=START, **kwargs)


def device(service: SigningService, *, now: int = NOW) -> TrustStore:
    """A device provisioned from the first root, then sent the current bundle."""
    roots, signing_keys = service.trust_bundle()
    store = TrustStore.pin(roots[0])
    for root in roots[1:]:
        store = store.rotate_root(root, now=now)
    return store.update_signing_keys(signing_keys, now=now)


def snapshot(*directories: Path) -> dict[Path, tuple[bytes, int, int]]:
    return {
        p: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
        for d in directories
        for p in d.rglob("*")
        if p.is_file()
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- init ----------------------------------------------------------------------


def test_init_lays_out_both_directories(dirs):
    root_dir, signing_dir = dirs

    info = init(dirs)

    assert {p.name for p in (root_dir / "keys").iterdir()} == {f"{k}.pem" for k in info.root_keyids}
    assert {p.name for p in (signing_dir / "keys").iterdir()} == {f"{info.signing_keyid}.pem"}
    assert (signing_dir / "root.json").read_bytes() == (
        signing_dir / "roots" / "1.json"
    ).read_bytes()
    assert (signing_dir / "signing_keys.json").is_file()
    assert (info.root_version, info.root_threshold, info.signing_keys_version) == (1, 1, 1)
    assert info.listed_keyids == (info.signing_keyid,)
    assert info.signing_keys_expires_at == START + 365 * DAY
    assert info.root_expires_at == START + 3650 * DAY
    assert not list(root_dir.rglob(".tmp-*"))
    assert not list(signing_dir.rglob(".tmp-*"))


def test_private_keys_are_0600_pkcs8_and_directories_0700(dirs):
    root_dir, signing_dir = dirs
    init(dirs)

    for directory in (root_dir, root_dir / "keys", signing_dir, signing_dir / "keys"):
        assert mode(directory) == 0o700, directory
    pems = [*root_dir.rglob("*.pem"), *signing_dir.rglob("*.pem")]
    assert len(pems) == 2
    for pem in pems:
        assert mode(pem) == 0o600, pem
        assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert not list(signing_dir.glob("**/root*.pem"))  # no root key on the server


def test_init_is_idempotent(dirs):
    first = init(dirs)
    before = snapshot(*dirs)

    again = init(dirs, root_keys=3, root_threshold=2)  # other wishes change nothing

    assert again == first
    assert snapshot(*dirs) == before


def test_init_with_a_root_threshold(dirs):
    info = init(dirs, root_keys=3, root_threshold=2)
    service = SigningService.load(dirs[1])

    root = parse_root(service.trust_bundle().roots[0])
    assert (len(root.keys), root.threshold) == (3, 2)
    assert len(info.root_keyids) == 3
    assert len(service.trust_bundle().signing_keys.signatures) == 2
    device(service).verify_manifest(service.sign_manifest(manifest()), now=NOW)


@pytest.mark.parametrize(
    "remove",
    [
        "signing/signing_keys.json",
        "signing/root.json",
        "signing/keys",
        "signing/roots",
        "root/keys",
    ],
)
def test_half_initialized_directories_are_refused(dirs, remove):
    init(dirs)
    target = dirs[0].parent / remove
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()

    with pytest.raises(ConfigError) as caught:
        init(dirs)
    assert caught.value.reason == "half_initialized"
    assert "missing" in str(caught.value)


def test_a_root_directory_of_other_keys_is_refused(dirs, tmp_path):
    init(dirs)
    init_keys(root_dir=tmp_path / "other-root", signing_dir=tmp_path / "other-signing", now=START)

    with pytest.raises(ConfigError) as caught:
        init_keys(root_dir=tmp_path / "other-root", signing_dir=dirs[1], now=START)
    assert caught.value.reason == "root_keys_missing"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"root_keys": 0},
        {"root_keys": 17},
        {"root_keys": 2, "root_threshold": 3},
        {"root_threshold": 0},
        {"signing_validity_days": 0},
        {"root_passphrase": b""},
    ],
)
def test_bad_init_parameters_write_nothing(dirs, kwargs):
    with pytest.raises(InvalidInputError):
        init(dirs, **kwargs)
    assert not dirs[0].exists()
    assert not dirs[1].exists()


# -- the signing service -------------------------------------------------------


def test_signing_service_works_without_the_root_directory(dirs):
    root_dir, signing_dir = dirs
    info = init(dirs)
    shutil.rmtree(root_dir)

    service = SigningService.load(signing_dir)
    envelope = service.sign_manifest(manifest())

    assert service.keyid == info.signing_keyid
    assert service.info == info
    assert service.key_list_expires_at == info.signing_keys_expires_at
    assert device(service).verify_manifest(envelope, now=NOW) == manifest()
    assert [s.keyid for s in envelope.signatures] == [info.signing_keyid]


def test_trust_bundle_travels_in_a_desired_message(dirs):
    init(dirs)
    service = SigningService.load(dirs[1])
    roots, signing_keys = service.trust_bundle()

    desired = Desired(
        revision=1, issued_at=NOW, deployments=(), signing_keys=signing_keys, roots=roots
    )

    assert decode_as(Desired, encode(desired)) == desired


def test_a_manifest_after_the_key_list_expires_is_refused(dirs):
    init(dirs, signing_validity_days=5)  # the list lapses at NOW - 5 days
    service = SigningService.load(dirs[1])

    with pytest.raises(ConfigError) as caught:
        service.sign_manifest(manifest())
    assert caught.value.reason == ExpiredError.reason


def test_passphrase_protected_keys(dirs):
    root_dir, signing_dir = dirs
    init(dirs, root_passphrase=b"root secret", signing_passphrase=b"signing secret")

    for pem in [*root_dir.rglob("*.pem"), *signing_dir.rglob("*.pem")]:
        assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(ConfigError) as missing:
        SigningService.load(signing_dir)
    with pytest.raises(ConfigError) as wrong:
        SigningService.load(signing_dir, passphrase=b"guess")
    assert (missing.value.reason, wrong.value.reason) == ("key_passphrase", "key_unreadable")
    with pytest.raises(ConfigError):
        rotate_signing_key(
            root_dir=root_dir, signing_dir=signing_dir, now=START, root_passphrase=b"x"
        )

    rotate_signing_key(
        root_dir=root_dir,
        signing_dir=signing_dir,
        now=START,
        root_passphrase=b"root secret",
        signing_passphrase=b"signing secret",
    )
    service = SigningService.load(signing_dir, passphrase=b"signing secret")
    device(service).verify_manifest(service.sign_manifest(manifest()), now=NOW)


def test_a_private_key_others_can_read_is_refused(dirs):
    info = init(dirs)
    (dirs[1] / "keys" / f"{info.signing_keyid}.pem").chmod(0o644)

    with pytest.raises(ConfigError) as caught:
        SigningService.load(dirs[1])
    assert caught.value.reason == "key_exposed"


def test_tampered_published_keys_stop_the_service(dirs):
    init(dirs)
    path = dirs[1] / "signing_keys.json"
    envelope = SignedEnvelope.from_bytes(path.read_bytes())
    forged = SignedEnvelope(
        signed={**envelope.signed, "expires_at": envelope.signed["expires_at"] + 1},
        signatures=envelope.signatures,
    )
    path.write_bytes(forged.to_bytes())

    with pytest.raises(ConfigError) as caught:
        SigningService.load(dirs[1])
    assert caught.value.reason == "bad_keys"


def test_uninitialized_signing_dir(tmp_path):
    with pytest.raises(ConfigError):
        SigningService.load(tmp_path / "nothing")


# -- signing key rotation ------------------------------------------------------


def test_rotation_with_revocation_refuses_the_old_key(dirs):
    root_dir, signing_dir = dirs
    first = init(dirs)
    old_service = SigningService.load(signing_dir)
    old_store = device(old_service)
    old_manifest = old_service.sign_manifest(manifest(version=3))

    info = rotate_signing_key(root_dir=root_dir, signing_dir=signing_dir, now=START + DAY)
    service = SigningService.load(signing_dir)

    assert info.signing_keys_version == 2
    assert info.signing_keyid != first.signing_keyid
    assert info.revoked_keyids == (first.signing_keyid,)
    assert info.listed_keyids == (info.signing_keyid,)
    assert service.info == info
    assert {p.stem for p in (signing_dir / "keys").iterdir()} == {info.signing_keyid}
    store = old_store.update_signing_keys(service.trust_bundle().signing_keys, now=NOW)
    with pytest.raises(RevokedKeyError):
        store.verify_manifest(old_manifest, now=NOW)
    assert store.verify_manifest(service.sign_manifest(manifest(version=4)), now=NOW).version == 4
    assert device(service).signing_keys == store.signing_keys


def test_rotation_without_revocation_keeps_the_old_key_until_it_expires(dirs):
    root_dir, signing_dir = dirs
    first = init(dirs, signing_validity_days=30)
    old_manifest = SigningService.load(signing_dir).sign_manifest(manifest())

    info = rotate_signing_key(
        root_dir=root_dir, signing_dir=signing_dir, now=START + DAY, revoke_old=False
    )
    service = SigningService.load(signing_dir)

    assert info.listed_keyids == (info.signing_keyid, first.signing_keyid)
    assert info.revoked_keyids == ()
    assert service.keyid == info.signing_keyid
    store = device(service)
    assert store.verify_manifest(old_manifest, now=NOW) == manifest()
    with pytest.raises(ExpiredError):  # the old key's own expiry still holds
        store.verify_manifest(old_manifest, now=START + 30 * DAY)


def test_repeated_rotations_drop_expired_keys_and_accumulate_revocations(dirs):
    root_dir, signing_dir = dirs
    init(dirs, signing_validity_days=2)
    kept = rotate_signing_key(
        root_dir=root_dir,
        signing_dir=signing_dir,
        now=START + 1 * DAY,
        revoke_old=False,
        signing_validity_days=10,
    )
    later = rotate_signing_key(
        root_dir=root_dir, signing_dir=signing_dir, now=START + 5 * DAY, revoke_old=False
    )
    last = rotate_signing_key(root_dir=root_dir, signing_dir=signing_dir, now=START + 6 * DAY)

    assert later.listed_keyids == (later.signing_keyid, kept.signing_keyid)  # the first expired
    assert last.revoked_keyids == (later.signing_keyid, kept.signing_keyid)
    assert last.signing_keys_version == 4


def test_signing_rotation_needs_the_root_keys(dirs, tmp_path):
    init(dirs)

    with pytest.raises(ConfigError) as caught:
        rotate_signing_key(root_dir=tmp_path / "empty", signing_dir=dirs[1], now=START)
    assert caught.value.reason == "root_keys_missing"


# -- root rotation -------------------------------------------------------------


def test_devices_follow_root_rotations_step_by_step(dirs):
    root_dir, signing_dir = dirs
    first = init(dirs)
    pinned = device(SigningService.load(signing_dir))  # a device that then goes offline

    second = rotate_root(
        root_dir=root_dir, signing_dir=signing_dir, now=START + DAY, new_keys=3, new_threshold=2
    )
    third = rotate_root(
        root_dir=root_dir, signing_dir=signing_dir, now=START + 2 * DAY, new_keys=2, new_threshold=1
    )
    service = SigningService.load(signing_dir)
    roots, signing_keys = service.trust_bundle()

    assert [parse_root(r).version for r in roots] == [1, 2, 3]
    assert (second.root_version, third.root_version) == (2, 3)
    assert (len(second.root_keyids), second.root_threshold) == (3, 2)
    assert third.signing_keyid == first.signing_keyid  # root rotation keeps the signing key
    assert parse_signing_keys(signing_keys).version == 3
    with pytest.raises(RootRotationError):
        pinned.rotate_root(roots[2], now=NOW)  # no skipping: the chain is needed
    store = pinned
    for root in roots[1:]:
        store = store.rotate_root(root, now=NOW)
    store = store.update_signing_keys(signing_keys, now=NOW)
    assert store.root.version == 3
    assert store.verify_manifest(service.sign_manifest(manifest()), now=NOW) == manifest()
    assert (signing_dir / "root.json").read_bytes() == (
        signing_dir / "roots" / "3.json"
    ).read_bytes()


def test_root_rotation_retires_the_old_root_keys(dirs):
    root_dir, signing_dir = dirs
    first = init(dirs, root_keys=2, root_threshold=2)

    info = rotate_root(
        root_dir=root_dir, signing_dir=signing_dir, now=START, new_keys=2, new_threshold=1
    )

    assert {p.stem for p in (root_dir / "keys").iterdir()} == set(info.root_keyids)
    assert {p.stem for p in (root_dir / "retired").iterdir()} == set(first.root_keyids)
    for pem in (root_dir / "keys").iterdir():
        assert mode(pem) == 0o600
    # The next rotation signs with the new root's keys only.
    rotate_signing_key(root_dir=root_dir, signing_dir=signing_dir, now=START)
    device(SigningService.load(signing_dir))


def test_an_expired_root_can_still_be_rotated(dirs):
    root_dir, signing_dir = dirs
    init(dirs, root_validity_days=1)
    pinned = device(SigningService.load(signing_dir), now=START)

    rotate_root(root_dir=root_dir, signing_dir=signing_dir, now=NOW, new_keys=1, new_threshold=1)

    service = SigningService.load(signing_dir)
    store = pinned.rotate_root(service.trust_bundle().roots[1], now=NOW)
    store = store.update_signing_keys(service.trust_bundle().signing_keys, now=NOW)
    store.verify_manifest(service.sign_manifest(manifest()), now=NOW)


def test_new_root_is_signed_by_both_thresholds(dirs):
    root_dir, signing_dir = dirs
    first = init(dirs, root_keys=3, root_threshold=2)

    info = rotate_root(
        root_dir=root_dir, signing_dir=signing_dir, now=START, new_keys=3, new_threshold=3
    )

    envelope = SignedEnvelope.from_bytes((signing_dir / "roots" / "2.json").read_bytes())
    signers = {s.keyid for s in envelope.signatures}
    assert len(signers & set(first.root_keyids)) == 2
    assert len(signers & set(info.root_keyids)) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"new_keys": 0, "new_threshold": 1}, {"new_keys": 2, "new_threshold": 3}],
)
def test_bad_root_rotation_parameters(dirs, kwargs):
    init(dirs)
    before = snapshot(*dirs)

    with pytest.raises(InvalidInputError):
        rotate_root(root_dir=dirs[0], signing_dir=dirs[1], now=START, **kwargs)
    assert snapshot(*dirs) == before


def test_root_rotation_cut_short_leaves_a_state_that_verifies(dirs, monkeypatch):
    """Killed after the re-signed key list, before the new root reached roots/."""
    root_dir, signing_dir = dirs
    init(dirs)
    pinned = device(SigningService.load(signing_dir))
    real_write = atomic.write_atomic

    def crash_on_roots(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        if path.parent.name == "roots":
            raise KeyboardInterrupt
        real_write(path, data, mode=mode)

    monkeypatch.setattr("edgefleet.server.keys.write_atomic", crash_on_roots)
    with pytest.raises(KeyboardInterrupt):
        rotate_root(
            root_dir=root_dir, signing_dir=signing_dir, now=START, new_keys=1, new_threshold=1
        )
    monkeypatch.undo()

    service = SigningService.load(signing_dir)
    assert [parse_root(r).version for r in service.trust_bundle().roots] == [1]
    store = pinned.update_signing_keys(service.trust_bundle().signing_keys, now=NOW)
    store.verify_manifest(service.sign_manifest(manifest()), now=NOW)


def test_signing_rotation_cut_short_keeps_signing_with_the_listed_key(dirs, monkeypatch):
    root_dir, signing_dir = dirs
    first = init(dirs)
    real_write = atomic.write_atomic

    def crash_on_list(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        if path.name == "signing_keys.json":
            raise KeyboardInterrupt
        real_write(path, data, mode=mode)

    monkeypatch.setattr("edgefleet.server.keys.write_atomic", crash_on_list)
    with pytest.raises(KeyboardInterrupt):
        rotate_signing_key(root_dir=root_dir, signing_dir=signing_dir, now=START)
    monkeypatch.undo()

    assert len(list((signing_dir / "keys").iterdir())) == 2  # the new key, never listed
    service = SigningService.load(signing_dir)
    assert service.keyid == first.signing_keyid
    device(service).verify_manifest(service.sign_manifest(manifest()), now=NOW)
    info = rotate_signing_key(root_dir=root_dir, signing_dir=signing_dir, now=START)
    assert {p.stem for p in (signing_dir / "keys").iterdir()} == {info.signing_keyid}


def test_a_signing_key_the_list_does_not_name_is_refused(dirs, tmp_path):
    """A key from another installation, copied in: devices would refuse what it signs."""
    init(dirs)
    other = init_keys(root_dir=tmp_path / "r2", signing_dir=tmp_path / "s2", now=START)
    for pem in (dirs[1] / "keys").iterdir():
        pem.unlink()
    shutil.copy2(tmp_path / "s2" / "keys" / f"{other.signing_keyid}.pem", dirs[1] / "keys")

    with pytest.raises(ConfigError) as caught:
        SigningService.load(dirs[1])
    assert caught.value.reason == "no_signing_key"
