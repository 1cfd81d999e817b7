"""The exception tree of ``edgefleet.shared``.

Every parser and verifier in the package raises one of these, never a bare
``ValueError``/``KeyError``/``json.JSONDecodeError``, so the I/O edges (the
agent's MQTT handler, the server's ingest and HTTP layer) can count, log and
translate rejections with a single ``except``::

    EdgefleetError
    ├── TopicError                  topic or device id that is not ours
    ├── MessageError                payload that is not a valid message
    │   ├── MessageTooLargeError    over the size cap of its kind
    │   ├── UnsupportedSchemaError  schema version this build does not read
    │   └── ManifestError           signed envelope or manifest body malformed
    ├── TrustError                  signatures do not establish trust
    │   ├── SignatureError          a signature does not verify (tampering)
    │   ├── UnknownKeyError         signed by a key nobody vouches for
    │   ├── RevokedKeyError         signed by a key the root revoked
    │   ├── ExpiredError            manifest, key, key list or root past expiry
    │   ├── ThresholdError          fewer distinct valid signatures than needed
    │   └── RootRotationError       new root skips a version or lacks a threshold
    └── UpdateRejectedError         trusted, but must not be installed here
        ├── RollbackError           version lower than the one installed
        ├── VersionConflictError    same version, different artifact hash
        ├── ProfileMismatchError    built for another hardware profile
        └── ArtifactError           bytes do not match the manifest
            └── ArtifactTooLargeError  declared or received size over the limit

The ``reason`` attribute is a short, stable, machine-readable slug (for
counters and ``failed(reason)`` events); ``str(err)`` is for humans.
"""

from __future__ import annotations


class EdgefleetError(Exception):
    """Root of everything ``edgefleet.shared`` raises on purpose."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TopicError(EdgefleetError):
    reason = "bad_topic"


class MessageError(EdgefleetError):
    reason = "bad_message"


class MessageTooLargeError(MessageError):
    reason = "too_large"


class UnsupportedSchemaError(MessageError):
    reason = "unsupported_schema"


class ManifestError(MessageError):
    reason = "bad_manifest"


class TrustError(EdgefleetError):
    reason = "untrusted"


class SignatureError(TrustError):
    reason = "bad_signature"


class UnknownKeyError(TrustError):
    reason = "unknown_key"


class RevokedKeyError(TrustError):
    reason = "revoked_key"


class ExpiredError(TrustError):
    reason = "expired"


class ThresholdError(TrustError):
    reason = "threshold_not_met"


class RootRotationError(TrustError):
    reason = "bad_root_rotation"


class UpdateRejectedError(EdgefleetError):
    reason = "rejected"


class RollbackError(UpdateRejectedError):
    reason = "rollback"


class VersionConflictError(UpdateRejectedError):
    reason = "version_conflict"


class ProfileMismatchError(UpdateRejectedError):
    reason = "wrong_profile"


class ArtifactError(UpdateRejectedError):
    reason = "artifact_mismatch"


class ArtifactTooLargeError(ArtifactError):
    reason = "artifact_too_large"
