"""Ed25519 signed envelopes (TUF style): ``{"signed": {...}, "signatures": [...]}``.

Signatures cover the canonical JSON of ``signed`` (see
:func:`edgefleet.shared.jsoncodec.canonical`), so any re-encoding of the same
value verifies and any change of value does not. Key ids are the SHA-256 of
the raw public key, so one key can never pose as two and count twice toward
a threshold. Holding private keys is the server's business; the helper that
signs lives here only so both sides share one definition of the bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import (
    ExpiredError,
    ManifestError,
    MessageError,
    RevokedKeyError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
)
from edgefleet.shared.schema import JsonObject, Length, Pattern

KEYID_RE = r"[0-9a-f]{64}"
PUBLIC_KEY_RE = r"[A-Za-z0-9+/]{43}="
SIGNATURE_RE = r"[A-Za-z0-9+/]{86}=="


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: Annotated[str, Pattern(KEYID_RE)]
    sig: Annotated[str, Pattern(SIGNATURE_RE)]


@dataclass(frozen=True, slots=True)
class SignedEnvelope:
    MAX_BYTES: ClassVar[int] = 256 * 1024

    signed: JsonObject
    signatures: Annotated[tuple[Signature, ...], Length(min=1, max=16)]

    @property
    def payload(self) -> bytes:
        """The exact bytes every signature is over."""
        return jsoncodec.canonical(self.signed)

    def to_bytes(self) -> bytes:
        return jsoncodec.canonical(schema.to_json(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedEnvelope:
        try:
            return schema.from_json(cls, jsoncodec.parse(data, max_bytes=cls.MAX_BYTES))
        except ManifestError:
            raise
        except MessageError as err:
            raise ManifestError(f"not a signed envelope: {err}", reason=err.reason) from err


def key_id(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def encode_public_key(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def decode_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as err:
        raise ManifestError(f"invalid Ed25519 public key {text[:16]!r}...: {err}") from err


def sign(signed: JsonObject, keys: Sequence[Ed25519PrivateKey]) -> SignedEnvelope:
    """Sign ``signed`` with each of ``keys`` (one signature per key)."""
    payload = jsoncodec.canonical(signed)
    signatures = tuple(
        Signature(
            keyid=key_id(key.public_key()),
            sig=base64.b64encode(key.sign(payload)).decode(),
        )
        for key in keys
    )
    return SignedEnvelope(signed=signed, signatures=signatures)


def verify_threshold(
    envelope: SignedEnvelope,
    keys: Mapping[str, Ed25519PublicKey],
    threshold: int,
    *,
    what: str,
    revoked: Collection[str] = (),
    expired: Collection[str] = (),
) -> frozenset[str]:
    """Return the distinct key ids whose signatures verify, if at least ``threshold``.

    ``keys`` are the keys currently allowed to sign; ``revoked`` and ``expired``
    name keys that were allowed once, only so that the error says why. When the
    threshold is not met, the most alarming cause wins: a signature that fails
    under a known key (tampering) before a revoked key, an expired key, an
    unknown key, and finally a plain shortfall (for example one key signing
    twice).
    """
    payload = envelope.payload
    valid: set[str] = set()
    bad: set[str] = set()
    seen_revoked: set[str] = set()
    seen_expired: set[str] = set()
    unknown: set[str] = set()
    for signature in envelope.signatures:
        keyid = signature.keyid
        if keyid in revoked:
            seen_revoked.add(keyid)
            continue
        if keyid in expired:
            seen_expired.add(keyid)
            continue
        key = keys.get(keyid)
        if key is None:
            unknown.add(keyid)
            continue
        try:
            key.verify(base64.b64decode(signature.sig, validate=True), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            bad.add(keyid)
        else:
            valid.add(keyid)
    if len(valid) >= threshold:
        return frozenset(valid)
    have = f"{len(valid)} of {threshold} required signatures on {what}"
    if bad:
        raise SignatureError(f"{what}: signature by {_short(bad)} does not verify ({have})")
    if seen_revoked:
        raise RevokedKeyError(f"{what}: signed by revoked key {_short(seen_revoked)} ({have})")
    if seen_expired:
        raise ExpiredError(f"{what}: signed by expired key {_short(seen_expired)} ({have})")
    if unknown:
        raise UnknownKeyError(f"{what}: signed by unknown key {_short(unknown)} ({have})")
    raise ThresholdError(f"{what}: only {have} (each key counts once)")


def _short(keyids: set[str]) -> str:
    return ", ".join(sorted(k[:12] for k in keyids))
