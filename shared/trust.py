"""The chain of trust from pinned root keys down to one model manifest.

::

    root (pinned in the device config, rotated N -> N+1 only)
      └─ signs the signing-key list (threshold, expiry, revocations)
           └─ signing keys sign manifests

Root keys stay offline; signing keys rotate by publishing a new key list,
without touching devices. A :class:`TrustStore` is an immutable value: every
update returns a new store and leaves the old one as it was, so a rejected
update can never half-apply. The caller persists :meth:`TrustStore.to_bytes`
atomically (temp file, fsync, rename) after each accepted change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import (
    ExpiredError,
    ManifestError,
    MessageError,
    RollbackError,
    RootRotationError,
    TrustError,
    UnknownKeyError,
    VersionConflictError,
)
from edgefleet.shared.manifest import Epoch, Manifest
from edgefleet.shared.messages import SCHEMA_VERSION, Version
from edgefleet.shared.schema import JsonObject, Length, Pattern, Range, require
from edgefleet.shared.signed import (
    KEYID_RE,
    PUBLIC_KEY_RE,
    SignedEnvelope,
    decode_public_key,
    key_id,
    verify_threshold,
)

ROOT_TYPE = "root"
SIGNING_KEYS_TYPE = "signing_keys"
STORE_MAX_BYTES = 1024 * 1024

KeyId = Annotated[str, Pattern(KEYID_RE)]
Threshold = Annotated[int, Range(1, 16)]


@dataclass(frozen=True, slots=True)
class PublicKey:
    keyid: KeyId
    public_key: Annotated[str, Pattern(PUBLIC_KEY_RE)]
    expires_at: Epoch | None = None

    def __post_init__(self) -> None:
        require(
            key_id(decode_public_key(self.public_key)) == self.keyid,
            f"key id {self.keyid[:12]} is not the sha256 of its public key",
        )

    def load(self) -> Ed25519PublicKey:
        return decode_public_key(self.public_key)


def _check_keys(keys: tuple[PublicKey, ...], threshold: int, what: str) -> None:
    ids = [k.keyid for k in keys]
    require(len(set(ids)) == len(ids), f"{what}: a key is listed twice")
    require(threshold <= len(ids), f"{what}: threshold {threshold} exceeds {len(ids)} keys")


@dataclass(frozen=True, slots=True)
class Root:
    version: Version
    keys: Annotated[tuple[PublicKey, ...], Length(min=1, max=16)]
    threshold: Threshold
    expires_at: Epoch

    def __post_init__(self) -> None:
        _check_keys(self.keys, self.threshold, f"root v{self.version}")

    def key_map(self) -> dict[str, Ed25519PublicKey]:
        return {k.keyid: k.load() for k in self.keys}


@dataclass(frozen=True, slots=True)
class SigningKeyList:
    """Which keys may sign manifests, until when, and how many must sign each one."""

    version: Version
    keys: Annotated[tuple[PublicKey, ...], Length(min=1, max=64)]
    threshold: Threshold
    expires_at: Epoch
    revoked: Annotated[tuple[KeyId, ...], Length(max=1024)] = ()

    def __post_init__(self) -> None:
        _check_keys(self.keys, self.threshold, f"signing key list v{self.version}")
        require(
            not {k.keyid for k in self.keys} & set(self.revoked), "a key is both listed and revoked"
        )


def to_signed(body: Root | SigningKeyList) -> JsonObject:
    """The body to sign for a root or a key list, tagged with its role."""
    out: dict[str, Any] = schema.to_json(body)
    out["type"] = ROOT_TYPE if isinstance(body, Root) else SIGNING_KEYS_TYPE
    out["schema"] = SCHEMA_VERSION
    return out


_Body = TypeVar("_Body", Root, SigningKeyList)


def _parse(cls: type[_Body], role: str, envelope: SignedEnvelope) -> _Body:
    body = dict(envelope.signed)
    found = body.pop("type", None)
    if found != role:
        raise ManifestError(
            f"signed body has type {found!r}, expected {role!r}", reason="wrong_type"
        )
    if body.pop("schema", None) != SCHEMA_VERSION:
        raise ManifestError(f"{role}: unsupported schema", reason="unsupported_schema")
    try:
        return schema.from_json(cls, body)
    except MessageError as err:
        raise ManifestError(f"invalid {role}: {err}", reason=err.reason) from err


def parse_root(envelope: SignedEnvelope) -> Root:
    return _parse(Root, ROOT_TYPE, envelope)


def parse_signing_keys(envelope: SignedEnvelope) -> SigningKeyList:
    return _parse(SigningKeyList, SIGNING_KEYS_TYPE, envelope)


def _not_expired(what: str, expires_at: int, now: float) -> None:
    if now >= expires_at:
        raise ExpiredError(f"{what} expired at {expires_at} (now {int(now)})")


@dataclass(frozen=True, slots=True)
class TrustStore:
    """What a device trusts right now: one root and, once received, one key list."""

    root_envelope: SignedEnvelope
    signing_keys_envelope: SignedEnvelope | None = None

    @property
    def root(self) -> Root:
        return parse_root(self.root_envelope)

    @property
    def signing_keys(self) -> SigningKeyList | None:
        if self.signing_keys_envelope is None:
            return None
        return parse_signing_keys(self.signing_keys_envelope)

    @classmethod
    def pin(cls, root_envelope: SignedEnvelope) -> TrustStore:
        """Start from a root shipped in the device config; it must sign itself."""
        root = parse_root(root_envelope)
        verify_threshold(
            root_envelope, root.key_map(), root.threshold, what=f"root v{root.version}"
        )
        return cls(root_envelope)

    def rotate_root(self, envelope: SignedEnvelope, *, now: float) -> TrustStore:
        """Accept root N+1, signed by the thresholds of both root N and root N+1.

        Versions cannot be skipped: a device that missed several rotations
        applies them one at a time, so every step is vouched for by the keys
        it already trusts. A key list the new root no longer vouches for is dropped.
        """
        old = self.root
        new = parse_root(envelope)
        if new.version != old.version + 1:
            raise RootRotationError(
                f"root v{new.version} does not follow the trusted v{old.version}; "
                f"apply v{old.version + 1} first"
            )
        for label, signer in (("old", old), ("new", new)):
            try:
                verify_threshold(
                    envelope,
                    signer.key_map(),
                    signer.threshold,
                    what=f"root v{new.version} ({label} root keys)",
                )
            except TrustError as err:
                raise RootRotationError(
                    f"root v{new.version} lacks the {label} root's threshold: {err}"
                ) from err
        _not_expired(f"root v{new.version}", new.expires_at, now)
        rotated = TrustStore(envelope)
        if self.signing_keys_envelope is not None:
            try:
                return rotated.update_signing_keys(self.signing_keys_envelope, now=now)
            except TrustError:
                return rotated
        return rotated

    def update_signing_keys(self, envelope: SignedEnvelope, *, now: float) -> TrustStore:
        """Accept a root-signed key list that is current and not older than ours.

        An older list is refused, or a replay could revive a revoked key.
        """
        root = self.root
        _not_expired(f"root v{root.version}", root.expires_at, now)
        keys = parse_signing_keys(envelope)
        verify_threshold(
            envelope, root.key_map(), root.threshold, what=f"signing key list v{keys.version}"
        )
        _not_expired(f"signing key list v{keys.version}", keys.expires_at, now)
        if self.signing_keys_envelope is not None:
            current = parse_signing_keys(self.signing_keys_envelope)
            if keys.version < current.version:
                raise RollbackError(
                    f"signing key list v{keys.version} is older than the trusted v{current.version}"
                )
            if keys.version == current.version:
                if envelope.payload != self.signing_keys_envelope.payload:
                    raise VersionConflictError(
                        f"signing key list v{keys.version} differs from the trusted one "
                        "with the same version"
                    )
                return self
        return TrustStore(self.root_envelope, envelope)

    def verify_manifest(self, envelope: SignedEnvelope, *, now: float) -> Manifest:
        """The manifest, if current signing keys vouch for it and it has not expired."""
        keys = self.signing_keys
        if keys is None:
            raise UnknownKeyError("no signing key list is trusted yet")
        _not_expired(f"signing key list v{keys.version}", keys.expires_at, now)
        manifest = Manifest.from_signed(envelope.signed)
        what = f"manifest {manifest.model} v{manifest.version}"
        live = {k.keyid: k.load() for k in keys.keys if k.expires_at is None or now < k.expires_at}
        expired = {k.keyid for k in keys.keys if k.keyid not in live}
        verify_threshold(
            envelope,
            live,
            keys.threshold,
            what=what,
            revoked=frozenset(keys.revoked),
            expired=expired,
        )
        _not_expired(what, manifest.expires_at, now)
        return manifest

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {"root": schema.to_json(self.root_envelope)}
        if self.signing_keys_envelope is not None:
            body["signing_keys"] = schema.to_json(self.signing_keys_envelope)
        return jsoncodec.canonical(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> TrustStore:
        """Reload a persisted store, re-checking every signature (the disk is not trusted)."""
        body = jsoncodec.parse(data, max_bytes=STORE_MAX_BYTES)
        if not isinstance(body, dict) or set(body) - {"root", "signing_keys"} or "root" not in body:
            raise ManifestError("persisted trust store has an unexpected shape")
        try:
            root = schema.from_json(SignedEnvelope, body["root"])
            keys = body.get("signing_keys")
            key_env = None if keys is None else schema.from_json(SignedEnvelope, keys)
        except MessageError as err:
            raise ManifestError(f"persisted trust store is invalid: {err}") from err
        store = cls.pin(root)
        if key_env is not None:
            key_list = parse_signing_keys(key_env)
            verify_threshold(
                key_env,
                store.root.key_map(),
                store.root.threshold,
                what=f"signing key list v{key_list.version}",
            )
            store = TrustStore(root, key_env)
        return store
