"""Anti-rollback: the highest version a device has accepted, per model.

An attacker who can replay old, validly signed manifests could otherwise walk
a device back to a model with a known flaw. Rules (DESIGN.md):

* a higher version than the recorded one is new;
* the same version with the same artifact hash is what the device already
  has (a retained ``desired`` redelivered on reconnect) and is a no-op;
* the same version with another hash, or a lower version, is refused.

An operator's rollback is therefore a *new* signed manifest, with a higher
version, pointing at the old bytes. The state is an immutable value; the
caller persists :meth:`AntiRollbackState.to_bytes` atomically once the
update it guards has been accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated

from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import MessageError, RollbackError, VersionConflictError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Name, Sha256, Version
from edgefleet.shared.schema import Length, require

STATE_MAX_BYTES = 256 * 1024


class Verdict(StrEnum):
    NEW = "new"
    CURRENT = "current"


@dataclass(frozen=True, slots=True)
class Accepted:
    version: Version
    sha256: Sha256


@dataclass(frozen=True, slots=True)
class _Entry:
    model: Name
    version: Version
    sha256: Sha256


@dataclass(frozen=True, slots=True)
class _Persisted:
    models: Annotated[tuple[_Entry, ...], Length(max=1024)]

    def __post_init__(self) -> None:
        names = [e.model for e in self.models]
        require(len(set(names)) == len(names), "a model is recorded twice")


@dataclass(frozen=True)
class AntiRollbackState:
    accepted: Mapping[str, Accepted] = field(default_factory=lambda: MappingProxyType({}))

    def check(self, manifest: Manifest) -> Verdict:
        """Classify ``manifest`` against what was accepted, or raise why it must not run."""
        seen = self.accepted.get(manifest.model)
        if seen is None or manifest.version > seen.version:
            return Verdict.NEW
        if manifest.version < seen.version:
            raise RollbackError(
                f"{manifest.model} v{manifest.version} is older than the accepted v{seen.version}"
            )
        if manifest.artifact.sha256 != seen.sha256:
            raise VersionConflictError(
                f"{manifest.model} v{manifest.version} was accepted with artifact "
                f"{seen.sha256[:12]}, this manifest names {manifest.artifact.sha256[:12]}"
            )
        return Verdict.CURRENT

    def record(self, manifest: Manifest) -> AntiRollbackState:
        """The state after accepting ``manifest``; only a strictly newer version moves it."""
        if self.check(manifest) is Verdict.CURRENT:
            raise RollbackError(f"{manifest.model} v{manifest.version} is already accepted")
        models = dict(self.accepted)
        models[manifest.model] = Accepted(manifest.version, manifest.artifact.sha256)
        return AntiRollbackState(MappingProxyType(models))

    def to_bytes(self) -> bytes:
        entries = tuple(
            _Entry(model, seen.version, seen.sha256)
            for model, seen in sorted(self.accepted.items())
        )
        return jsoncodec.canonical(schema.to_json(_Persisted(entries)))

    @classmethod
    def from_bytes(cls, data: bytes) -> AntiRollbackState:
        try:
            persisted = schema.from_json(
                _Persisted, jsoncodec.parse(data, max_bytes=STATE_MAX_BYTES)
            )
        except MessageError as err:
            raise MessageError(
                f"persisted anti-rollback state is invalid: {err}", reason=err.reason
            ) from err
        return cls(
            MappingProxyType({e.model: Accepted(e.version, e.sha256) for e in persisted.models})
        )
