"""The signing service: what the server runs to sign manifests, without the root keys.

It reads only the signing directory (see :mod:`edgefleet.server.keys` for
the whole layout and the operations that need the offline root)::

    {signing_dir}/             0700
      keys/{keyid}.pem         the signing key (PKCS8, 0600)
      roots/{n}.json           every root version's envelope, 1..N
      root.json                a copy of roots/{N}.json: what a new device pins
                               (not read here; the chain in roots/ is what counts)
      signing_keys.json        the current root-signed signing-key list

What it reads is replayed through :class:`~edgefleet.shared.trust.TrustStore`,
the verifier the agents run, so damaged or mismatched key files stop the
server at start-up instead of producing manifests that devices refuse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.shared.errors import MessageError, TrustError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.signed import SignedEnvelope, key_id, sign
from edgefleet.shared.trust import (
    Root,
    SigningKeyList,
    TrustStore,
    parse_root,
    parse_signing_keys,
)

KEYS = "keys"
ROOTS = "roots"
ROOT_FILE = "root.json"
SIGNING_KEYS_FILE = "signing_keys.json"

_ROOT_NAME = re.compile(r"([1-9][0-9]{0,8})\.json")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is published now, and which key the server signs with."""

    root_version: int
    root_keyids: tuple[str, ...]
    root_threshold: int
    root_expires_at: int
    signing_keys_version: int
    signing_keyid: str
    signing_keys_expires_at: int
    listed_keyids: tuple[str, ...]
    revoked_keyids: tuple[str, ...]


class TrustBundle(NamedTuple):
    """What a device needs to trust manifests: the root chain (oldest first) and the key list."""

    roots: tuple[SignedEnvelope, ...]
    signing_keys: SignedEnvelope


def read_private_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(f"private key {path} is missing", reason="key_missing") from err
    if mode & 0o077:
        raise ConfigError(
            f"private key {path} has mode {mode:o}: others may read it (chmod 600 {path})",
            reason="key_exposed",
        )
    try:
        key = load_pem_private_key(data, password=passphrase)
    except TypeError as err:  # encrypted and no passphrase, or a passphrase for a plain key
        raise ConfigError(f"private key {path}: {err}", reason="key_passphrase") from err
    except ValueError as err:
        raise ConfigError(
            f"private key {path} cannot be read (wrong passphrase or damaged file)",
            reason="key_unreadable",
        ) from err
    if not isinstance(key, Ed25519PrivateKey) or key_id(key.public_key()) != path.stem:
        raise ConfigError(f"{path} is not the Ed25519 key its name says", reason="key_mismatch")
    return key


def pem_ids(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.stem for p in directory.glob("*.pem")}


@dataclass(frozen=True, slots=True)
class PublishedKeys:
    """The root chain (oldest first) and the key list, as found in a signing directory."""

    roots: tuple[SignedEnvelope, ...]
    key_envelope: SignedEnvelope

    @property
    def root(self) -> Root:
        return parse_root(self.roots[-1])

    @property
    def key_list(self) -> SigningKeyList:
        return parse_signing_keys(self.key_envelope)


def _read_envelope(path: Path) -> SignedEnvelope:
    try:
        return SignedEnvelope.from_bytes(path.read_bytes())
    except FileNotFoundError as err:
        raise ConfigError(f"{path} is missing: keys are not initialized", reason="no_keys") from err
    except MessageError as err:
        raise ConfigError(f"{path} is not a valid envelope: {err}", reason="bad_keys") from err


def read_published(signing_dir: Path) -> PublishedKeys:
    versions = sorted(
        int(m.group(1))
        for p in (signing_dir / ROOTS).glob("*.json")
        if (m := _ROOT_NAME.fullmatch(p.name))
    )
    if versions != list(range(1, len(versions) + 1)) or not versions:
        raise ConfigError(
            f"{signing_dir / ROOTS} holds root versions {versions}, not an unbroken 1..N",
            reason="bad_keys",
        )
    roots = tuple(_read_envelope(signing_dir / ROOTS / f"{n}.json") for n in versions)
    for n, envelope in zip(versions, roots, strict=True):
        try:
            inside = parse_root(envelope).version
        except MessageError as err:
            raise ConfigError(f"roots/{n}.json is not a root: {err}", reason="bad_keys") from err
        if inside != n:
            raise ConfigError(f"roots/{n}.json holds root v{inside}", reason="bad_keys")
    return PublishedKeys(roots, _read_envelope(signing_dir / SIGNING_KEYS_FILE))


def replay(roots: Sequence[SignedEnvelope], key_envelope: SignedEnvelope) -> TrustStore:
    """Walk the chain as a device pinned at root v1 would, checking signatures only.

    At time 0 nothing has expired yet: expiry is checked where a clock is at
    hand (rotations, signing), so a server whose key list lapsed still starts
    and can be rotated.
    """
    try:
        store = TrustStore.pin(roots[0])
        for envelope in roots[1:]:
            store = store.rotate_root(envelope, now=0)
        return store.update_signing_keys(key_envelope, now=0)
    except (TrustError, MessageError) as err:
        raise ConfigError(f"published keys do not verify: {err}", reason="bad_keys") from err


def active_keyid(signing_dir: Path, keys: SigningKeyList) -> str:
    """The key the server signs with: the first listed key whose private half is here.

    A rotation lists its new key first and writes its private half before
    the list, so this is the newest key even if the old one's file lingers.
    """
    held = pem_ids(signing_dir / KEYS)
    for key in keys.keys:
        if key.keyid in held:
            return key.keyid
    raise ConfigError(
        f"{signing_dir / KEYS} holds no private key of signing key list v{keys.version}",
        reason="no_signing_key",
    )


def key_info(published: PublishedKeys, signing_keyid: str) -> KeyInfo:
    root, keys = published.root, published.key_list
    return KeyInfo(
        root_version=root.version,
        root_keyids=tuple(k.keyid for k in root.keys),
        root_threshold=root.threshold,
        root_expires_at=root.expires_at,
        signing_keys_version=keys.version,
        signing_keyid=signing_keyid,
        signing_keys_expires_at=keys.expires_at,
        listed_keyids=tuple(k.keyid for k in keys.keys),
        revoked_keyids=keys.revoked,
    )


class SigningService:
    """Signs manifests with the current signing key; needs only the signing directory.

    Construction replays the published chain through a TrustStore and checks
    that the key is listed, so a server with damaged or mismatched key files
    refuses to start rather than sign what devices will refuse.
    """

    def __init__(
        self,
        *,
        roots: Sequence[SignedEnvelope],
        signing_keys: SignedEnvelope,
        key: Ed25519PrivateKey,
    ) -> None:
        if not roots:
            raise ConfigError("no root published", reason="no_keys")
        self._published = PublishedKeys(tuple(roots), signing_keys)
        self._store = replay(self._published.roots, signing_keys)
        self._key = key
        self.keyid = key_id(key.public_key())
        self._key_list = key_list = self._published.key_list
        if self.keyid not in {k.keyid for k in key_list.keys}:
            raise ConfigError(
                f"signing key {self.keyid[:12]} is not in signing key list v{key_list.version}",
                reason="no_signing_key",
            )

    @classmethod
    def load(cls, signing_dir: Path, *, passphrase: bytes | None = None) -> SigningService:
        published = read_published(signing_dir)
        keyid = active_keyid(signing_dir, published.key_list)
        key = read_private_key(signing_dir / KEYS / f"{keyid}.pem", passphrase)
        return cls(roots=published.roots, signing_keys=published.key_envelope, key=key)

    @property
    def info(self) -> KeyInfo:
        return key_info(self._published, self.keyid)

    @property
    def key_list_expires_at(self) -> int:
        """After this, devices refuse every manifest until a new key list is published."""
        return self._key_list.expires_at

    def trust_bundle(self) -> TrustBundle:
        """The root chain, oldest first, and the key list: for device bundles and ``Desired``."""
        return TrustBundle(self._published.roots, self._published.key_envelope)

    def sign_manifest(self, manifest: Manifest) -> SignedEnvelope:
        """Sign ``manifest``, refusing what devices would refuse at its ``created_at``."""
        envelope = sign(manifest.to_signed(), [self._key])
        try:
            self._store.verify_manifest(envelope, now=manifest.created_at)
        except MessageError as err:
            raise InvalidInputError(f"invalid manifest: {err}", reason=err.reason) from err
        except TrustError as err:
            raise ConfigError(
                f"cannot sign manifest {manifest.model} v{manifest.version}: {err}",
                reason=err.reason,
            ) from err
        return envelope
