"""Deterministic keys, roots, key lists and manifests for trust-chain tests.

Keys derive from fixed seeds so failures reproduce; time is a constant
(``NOW``) passed explicitly, never read from the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.shared.manifest import (
    ArtifactSpec,
    Baseline,
    BaselineBins,
    Manifest,
    Quantization,
    SelfTest,
    SelfTestVector,
    TensorDType,
    TensorSpec,
)
from edgefleet.shared.signed import SignedEnvelope, encode_public_key, key_id, sign
from edgefleet.shared.trust import PublicKey, Root, SigningKeyList, TrustStore, to_signed

NOW = 1_800_000_000
DAY = 86_400
YEAR = 365 * DAY


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def public(private: Ed25519PrivateKey, expires_at: int | None = None) -> PublicKey:
    pub = private.public_key()
    return PublicKey(keyid=key_id(pub), public_key=encode_public_key(pub), expires_at=expires_at)


def root_envelope(
    version: int,
    keys: Sequence[Ed25519PrivateKey],
    threshold: int,
    *,
    signed_by: Sequence[Ed25519PrivateKey] | None = None,
    expires_at: int = NOW + 10 * YEAR,
) -> SignedEnvelope:
    root = Root(
        version=version,
        keys=tuple(public(k) for k in keys),
        threshold=threshold,
        expires_at=expires_at,
    )
    return sign(to_signed(root), list(keys if signed_by is None else signed_by))


def key_list_envelope(
    version: int,
    keys: Sequence[Ed25519PrivateKey],
    threshold: int,
    *,
    signed_by: Sequence[Ed25519PrivateKey],
    expires_at: int = NOW + YEAR,
    key_expiry: dict[str, int] | None = None,
    revoked: Sequence[Ed25519PrivateKey] = (),
) -> SignedEnvelope:
    expiry = key_expiry or {}
    listed = tuple(public(k, expiry.get(key_id(k.public_key()))) for k in keys)
    body = SigningKeyList(
        version=version,
        keys=listed,
        threshold=threshold,
        expires_at=expires_at,
        revoked=tuple(key_id(k.public_key()) for k in revoked),
    )
    return sign(to_signed(body), list(signed_by))


def artifact_bytes(tag: str = "model") -> bytes:
    return (tag.encode() * 2048)[:5000]


def manifest(
    *,
    model: str = "vibration",
    version: int = 3,
    profile: str = "rpi4",
    artifact: bytes | None = None,
    created_at: int = NOW - DAY,
    expires_at: int = NOW + 30 * DAY,
) -> Manifest:
    data = artifact_bytes() if artifact is None else artifact
    return Manifest(
        model=model,
        version=version,
        hardware_profile=profile,
        artifact=ArtifactSpec(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            chunk_size=1024,
            chunk_count=-(-len(data) // 1024),
        ),
        inputs=(
            TensorSpec(
                name="x",
                dtype=TensorDType.INT8,
                shape=(1, 4),
                quantization=Quantization(scale=0.05, zero_point=-3),
            ),
        ),
        outputs=(TensorSpec(name="y", dtype=TensorDType.FLOAT32, shape=(1, 2)),),
        self_test=SelfTest(
            vectors=(SelfTestVector(input=(0.1, 0.2, 0.3, 0.4), expected=(0.9, 0.1)),),
            tolerance=0.02,
        ),
        created_at=created_at,
        expires_at=expires_at,
        baseline=Baseline(
            features=(BaselineBins(name="rms", edges=(0.0, 1.0), probabilities=(0.25, 0.5, 0.25)),)
        ),
    )


class Fleet:
    """A root of three keys (threshold 2) and signing keys S0..S2 (threshold 1)."""

    def __init__(self) -> None:
        self.roots = [key(f"root-{i}") for i in range(3)]
        self.signers = [key(f"signer-{i}") for i in range(3)]
        self.root_v1 = root_envelope(1, self.roots, 2)
        self.keys_v1 = key_list_envelope(1, self.signers, 1, signed_by=self.roots[:2])
        self.store = TrustStore.pin(self.root_v1).update_signing_keys(self.keys_v1, now=NOW)

    def sign(self, body: Manifest, *signers: Ed25519PrivateKey) -> SignedEnvelope:
        return sign(body.to_signed(), list(signers or self.signers[:1]))
