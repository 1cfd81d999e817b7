"""Server-side keys: the offline root, the online signing key, what devices are sent.

Two directories, because in production they live on different machines::

    {root_dir}/                0700, offline (an air-gapped laptop, a safe)
      keys/{keyid}.pem         private keys of the current root (PKCS8, 0600)
      retired/{keyid}.pem      keys of earlier roots: destroy them once every
                               device has rotated past their root
    {signing_dir}/             0700, on the server
      keys/{keyid}.pem         the signing key (PKCS8, 0600)
      roots/{n}.json           every root version's envelope, 1..N: a device
                               pinned at v1 rotates through v2, v3... in turn
      root.json                a copy of roots/{N}.json: what a new device pins
      signing_keys.json        the current root-signed signing-key list

Only :func:`init_keys`, :func:`rotate_signing_key` and :func:`rotate_root`
touch the root directory; :class:`~edgefleet.server.signing.SigningService`
(re-exported here), what the server runs, needs the signing directory
alone. Every envelope written here is first replayed through
:class:`~edgefleet.shared.trust.TrustStore`, the verifier the agents run, so
the server never publishes what a device would refuse.

Files are replaced atomically, private keys are written before the list
that names them, and a key list re-signed for a new root carries the old
root's signatures too. A run cut short therefore leaves a state that still
verifies: at worst a spare private key (ignored, cleared by the next
rotation of its kind) or a ``root.json`` one version behind ``roots/``
(harmless: a device that pins it rotates forward through the chain).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
)

from edgefleet.server.atomic import fsync_dir, make_dir, remove_durably, write_atomic
from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.server.signing import (
    KEYS,
    ROOT_FILE,
    ROOTS,
    SIGNING_KEYS_FILE,
    KeyInfo,
    PublishedKeys,
    SigningService,
    TrustBundle,
    active_keyid,
    key_info,
    pem_ids,
    read_private_key,
    read_published,
    replay,
)
from edgefleet.shared.errors import MessageError, TrustError
from edgefleet.shared.signed import SignedEnvelope, encode_public_key, key_id, sign
from edgefleet.shared.trust import (
    PublicKey,
    Root,
    SigningKeyList,
    TrustStore,
    parse_root,
    to_signed,
)

__all__ = [
    "KeyInfo",
    "SigningService",
    "TrustBundle",
    "init_keys",
    "rotate_root",
    "rotate_signing_key",
]

DAY = 86_400
MAX_SIGNATURES = 16
SIGNING_THRESHOLD = 1
"""The server signs each manifest with its one current key."""

RETIRED = "retired"
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700

# -- private key files ---------------------------------------------------------


def _encryption(passphrase: bytes | None) -> KeySerializationEncryption:
    if passphrase is None:
        return NoEncryption()
    if not passphrase:
        raise InvalidInputError("an empty passphrase protects nothing", reason="empty_passphrase")
    return BestAvailableEncryption(passphrase)


def _write_private_key(directory: Path, key: Ed25519PrivateKey, passphrase: bytes | None) -> str:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, _encryption(passphrase))
    keyid = key_id(key.public_key())
    write_atomic(directory / f"{keyid}.pem", pem, mode=PRIVATE_MODE)
    return keyid


def _public(key: Ed25519PrivateKey, expires_at: int | None = None) -> PublicKey:
    pub = key.public_key()
    return PublicKey(keyid=key_id(pub), public_key=encode_public_key(pub), expires_at=expires_at)


def _publish(
    signing_dir: Path, *, key_envelope: SignedEnvelope, root: SignedEnvelope | None = None
) -> None:
    """Write a new key list, then the new root (if any): its chain entry, then root.json.

    A key list that comes with a new root is signed by the old root too, so
    a crash between the files leaves a state that verifies either way.
    """
    write_atomic(signing_dir / SIGNING_KEYS_FILE, key_envelope.to_bytes(), mode=PUBLIC_MODE)
    if root is not None:
        version = parse_root(root).version
        write_atomic(signing_dir / ROOTS / f"{version}.json", root.to_bytes(), mode=PUBLIC_MODE)
        write_atomic(signing_dir / ROOT_FILE, root.to_bytes(), mode=PUBLIC_MODE)


def _checked(step: str, action: Callable[[], TrustStore]) -> TrustStore:
    """Run a TrustStore step on what is about to be published; a refusal stops it."""
    try:
        return action()
    except (TrustError, MessageError) as err:
        raise ConfigError(f"{step} would be refused by devices: {err}", reason="refused") from err


def _root_signers(root_dir: Path, root: Root, passphrase: bytes | None) -> list[Ed25519PrivateKey]:
    """Threshold-many private keys of ``root`` from the root directory."""
    held = pem_ids(root_dir / KEYS)
    present = sorted(k.keyid for k in root.keys if k.keyid in held)
    if len(present) < root.threshold:
        raise ConfigError(
            f"{root_dir / KEYS} holds {len(present)} of the {root.threshold} keys "
            f"root v{root.version} needs: is this the root directory of these keys?",
            reason="root_keys_missing",
        )
    return [
        read_private_key(root_dir / KEYS / f"{keyid}.pem", passphrase)
        for keyid in present[: root.threshold]
    ]


def _check_count(what: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInputError(f"{what} must be between {lo} and {hi}, got {value!r}")


# -- operations that need the root directory -----------------------------------


def init_keys(
    *,
    root_dir: Path,
    signing_dir: Path,
    now: int,
    root_keys: int = 1,
    root_threshold: int = 1,
    root_validity_days: int = 3650,
    signing_validity_days: int = 365,
    root_passphrase: bytes | None = None,
    signing_passphrase: bytes | None = None,
) -> KeyInfo:
    """Create root v1, a signing key and key list v1, unless they exist already.

    Idempotent: on initialized directories it changes nothing and returns
    what is there. Directories with only part of the set are refused: they
    are an interrupted run, or a root directory that belongs to other keys.
    """
    existing = _survey(root_dir, signing_dir)
    if existing is not None:
        return existing
    _check_count("root_keys", root_keys, 1, MAX_SIGNATURES)
    _check_count("root_threshold", root_threshold, 1, root_keys)
    _check_count("root_validity_days", root_validity_days, 1, 100 * 365)
    _check_count("signing_validity_days", signing_validity_days, 1, 100 * 365)
    for passphrase in (root_passphrase, signing_passphrase):
        _encryption(passphrase)  # refuse b"" before anything is written

    roots = [Ed25519PrivateKey.generate() for _ in range(root_keys)]
    root = Root(
        version=1,
        keys=tuple(sorted((_public(k) for k in roots), key=lambda p: p.keyid)),
        threshold=root_threshold,
        expires_at=now + root_validity_days * DAY,
    )
    root_signers = sorted(roots, key=lambda k: key_id(k.public_key()))[:root_threshold]
    root_envelope = sign(to_signed(root), root_signers)
    signer = Ed25519PrivateKey.generate()
    expires_at = now + signing_validity_days * DAY
    key_list = SigningKeyList(
        version=1,
        keys=(_public(signer, expires_at),),
        threshold=SIGNING_THRESHOLD,
        expires_at=expires_at,
    )
    key_envelope = sign(to_signed(key_list), root_signers)
    _checked(
        "root v1", lambda: TrustStore.pin(root_envelope).update_signing_keys(key_envelope, now=now)
    )

    for directory in (root_dir, root_dir / KEYS, signing_dir, signing_dir / KEYS):
        make_dir(directory, mode=DIR_MODE)
        directory.chmod(DIR_MODE)
    make_dir(signing_dir / ROOTS, mode=DIR_MODE)
    for key in roots:
        _write_private_key(root_dir / KEYS, key, root_passphrase)
    signing_keyid = _write_private_key(signing_dir / KEYS, signer, signing_passphrase)
    _publish(signing_dir, key_envelope=key_envelope, root=root_envelope)
    return key_info(PublishedKeys((root_envelope,), key_envelope), signing_keyid)


def _survey(root_dir: Path, signing_dir: Path) -> KeyInfo | None:
    """The current keys if both directories are complete; None if both are empty."""
    found = {
        "root keys": bool(pem_ids(root_dir / KEYS)),
        "signing key": bool(pem_ids(signing_dir / KEYS)),
        "root chain": any((signing_dir / ROOTS).glob("*.json")),
        ROOT_FILE: (signing_dir / ROOT_FILE).exists(),
        SIGNING_KEYS_FILE: (signing_dir / SIGNING_KEYS_FILE).exists(),
    }
    if not any(found.values()):
        return None
    if not all(found.values()):
        have = ", ".join(k for k, v in found.items() if v)
        lack = ", ".join(k for k, v in found.items() if not v)
        raise ConfigError(
            f"key directories {root_dir} and {signing_dir} are half-initialized "
            f"(found {have}; missing {lack}). If an earlier init was interrupted, "
            "remove both and run it again; otherwise pass the root directory of these keys",
            reason="half_initialized",
        )
    published = read_published(signing_dir)
    replay(published.roots, published.key_envelope)
    root = published.root
    if len(pem_ids(root_dir / KEYS) & {k.keyid for k in root.keys}) < root.threshold:
        raise ConfigError(
            f"{root_dir / KEYS} does not hold the keys of the published root v{root.version}",
            reason="root_keys_missing",
        )
    return key_info(published, active_keyid(signing_dir, published.key_list))


def rotate_signing_key(
    *,
    root_dir: Path,
    signing_dir: Path,
    now: int,
    revoke_old: bool = True,
    signing_validity_days: int = 365,
    root_passphrase: bytes | None = None,
    signing_passphrase: bytes | None = None,
) -> KeyInfo:
    """Publish key list v(N+1) with a new signing key, signed by the root threshold.

    ``revoke_old`` revokes the keys of list vN outright (a compromise: what
    they signed is refused from now on); otherwise they stay listed until
    their own expiry, so manifests already out keep verifying. Either way
    the server signs only with the new key and the old private keys are deleted.
    """
    _check_count("signing_validity_days", signing_validity_days, 1, 100 * 365)
    _encryption(signing_passphrase)
    published = read_published(signing_dir)
    store = replay(published.roots, published.key_envelope)
    root_signers = _root_signers(root_dir, published.root, root_passphrase)
    old = published.key_list

    signer = Ed25519PrivateKey.generate()
    expires_at = now + signing_validity_days * DAY
    if revoke_old:
        kept: tuple[PublicKey, ...] = ()
        revoked = tuple(dict.fromkeys(old.revoked + tuple(k.keyid for k in old.keys)))
    else:
        kept = tuple(k for k in old.keys if k.expires_at is None or now < k.expires_at)
        revoked = old.revoked
    key_list = SigningKeyList(
        version=old.version + 1,
        keys=(_public(signer, expires_at), *kept),
        threshold=SIGNING_THRESHOLD,
        expires_at=expires_at,
        revoked=revoked,
    )
    key_envelope = sign(to_signed(key_list), root_signers)
    _checked(
        f"signing key list v{key_list.version}",
        lambda: store.update_signing_keys(key_envelope, now=now),
    )

    keyid = _write_private_key(signing_dir / KEYS, signer, signing_passphrase)
    _publish(signing_dir, key_envelope=key_envelope)
    for stale in pem_ids(signing_dir / KEYS) - {keyid}:
        remove_durably(signing_dir / KEYS / f"{stale}.pem")
    return key_info(PublishedKeys(published.roots, key_envelope), keyid)


def rotate_root(
    *,
    root_dir: Path,
    signing_dir: Path,
    now: int,
    new_keys: int,
    new_threshold: int,
    root_validity_days: int = 3650,
    root_passphrase: bytes | None = None,
) -> KeyInfo:
    """Publish root v(N+1) with fresh keys, signed by the thresholds of roots N and N+1.

    The key list is re-signed as v(M+1), same keys and expiry, by both
    roots: devices drop a list their new root does not vouch for, and the
    old root's signatures keep it valid until ``roots/`` holds the new root.
    The old root's private keys move to ``retired/``.
    """
    _check_count("new_keys", new_keys, 1, MAX_SIGNATURES)
    _check_count("new_threshold", new_threshold, 1, new_keys)
    _check_count("root_validity_days", root_validity_days, 1, 100 * 365)
    _encryption(root_passphrase)
    published = read_published(signing_dir)
    store = replay(published.roots, published.key_envelope)
    old_root = published.root
    if old_root.threshold + new_threshold > MAX_SIGNATURES:
        raise InvalidInputError(
            f"root v{old_root.version + 1} would need {old_root.threshold} + {new_threshold} "
            f"signatures; an envelope holds at most {MAX_SIGNATURES}"
        )
    old_signers = _root_signers(root_dir, old_root, root_passphrase)

    fresh = sorted(
        (Ed25519PrivateKey.generate() for _ in range(new_keys)),
        key=lambda k: key_id(k.public_key()),
    )
    root = Root(
        version=old_root.version + 1,
        keys=tuple(_public(k) for k in fresh),
        threshold=new_threshold,
        expires_at=now + root_validity_days * DAY,
    )
    new_signers = fresh[:new_threshold]
    root_envelope = sign(to_signed(root), [*old_signers, *new_signers])
    rotated = _checked(f"root v{root.version}", lambda: store.rotate_root(root_envelope, now=now))
    old_list = published.key_list
    key_list = SigningKeyList(
        version=old_list.version + 1,
        keys=old_list.keys,
        threshold=old_list.threshold,
        expires_at=old_list.expires_at,
        revoked=old_list.revoked,
    )
    key_envelope = sign(to_signed(key_list), [*old_signers, *new_signers])
    replay(published.roots, key_envelope)  # what a crash before roots/ is written leaves
    _checked(
        f"signing key list v{key_list.version} under root v{root.version}",
        lambda: rotated.update_signing_keys(key_envelope, now=now),
    )

    for key in fresh:
        _write_private_key(root_dir / KEYS, key, root_passphrase)
    _publish(signing_dir, key_envelope=key_envelope, root=root_envelope)
    _retire(root_dir, keep={k.keyid for k in root.keys})
    after = PublishedKeys((*published.roots, root_envelope), key_envelope)
    return key_info(after, active_keyid(signing_dir, key_list))


def _retire(root_dir: Path, *, keep: set[str]) -> None:
    retired = root_dir / RETIRED
    make_dir(retired, mode=DIR_MODE)
    moved = False
    for keyid in pem_ids(root_dir / KEYS) - keep:
        (root_dir / KEYS / f"{keyid}.pem").replace(retired / f"{keyid}.pem")
        moved = True
    if moved:
        fsync_dir(retired)
        fsync_dir(root_dir / KEYS)
