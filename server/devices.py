"""The device registry: provisioning, revocation, presence.

Provisioning is the one place a device gets broker credentials. The row is
written first and committed last, with the broker call in between, so a
broker failure leaves no device behind and a database failure revokes the
broker account it just made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.db.models import Device
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.states import DeviceState
from edgefleet.shared.agent_config import (
    AgentConfig,
    BrokerSection,
    DeviceSection,
    TrustSection,
    pinned_root_text,
    render_agent_config,
)
from edgefleet.shared.errors import TopicError
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.topics import validate_device_id

TAG_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,62}")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
RESERVED_LABELS = frozenset({"id", "profile", "state", "tag"})
MAX_LABEL_VALUE = 200
MAX_TAGS = 64


class DeviceAccounts(Protocol):
    """Broker accounts, one per device (implemented over the broker's admin API)."""

    def provision_device(self, device_id: str) -> str: ...

    def revoke_device(self, device_id: str) -> None: ...


class TrustSource(Protocol):
    def trust_bundle(self) -> tuple[Sequence[SignedEnvelope], SignedEnvelope]: ...


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls_ca: str | None = None


@dataclass(frozen=True, slots=True)
class Provisioning:
    """What handing a device its credentials needs: the broker, the keys, the profiles."""

    accounts: DeviceAccounts
    trust: TrustSource
    catalog: ProfileCatalog
    broker: BrokerAddress


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    device_id: str
    profile: str
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Provisioned:
    device: Device
    bundle: str
    """The agent config (TOML) with the device's password: shown once, never stored."""


def snapshot(device: Device) -> dict[str, Any]:
    """What the audit log keeps of a device (never a credential)."""
    return {
        "id": device.id,
        "profile": device.profile,
        "state": device.state,
        "tags": list(device.tags),
        "labels": dict(device.labels),
    }


def _audit(
    session: Session,
    actor: str,
    action: str,
    device: Device,
    now: float,
    before: dict[str, Any] | None,
) -> None:
    audit.record(
        session=session,
        actor=actor,
        action=action,
        target_type="device",
        target_id=device.id,
        now=now,
        before=before,
        after=snapshot(device),
    )


def _check_spec(spec: DeviceSpec, catalog: ProfileCatalog) -> None:
    try:
        validate_device_id(spec.device_id)
    except TopicError as err:
        raise InvalidInputError(str(err), reason="invalid_device_id") from err
    catalog.get(spec.profile)
    if len(spec.tags) > MAX_TAGS:
        raise InvalidInputError(f"at most {MAX_TAGS} tags, got {len(spec.tags)}")
    for tag in spec.tags:
        if TAG_RE.fullmatch(tag) is None:
            raise InvalidInputError(
                f"invalid tag {tag[:80]!r}: want {TAG_RE.pattern}", reason="invalid_tag"
            )
    for key, value in spec.labels.items():
        if LABEL_KEY_RE.fullmatch(key) is None or key in RESERVED_LABELS:
            raise InvalidInputError(
                f"invalid label key {key[:80]!r}: want {LABEL_KEY_RE.pattern}, "
                f"not one of {sorted(RESERVED_LABELS)}",
                reason="invalid_label",
            )
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE or "\0" in value:
            raise InvalidInputError(
                f"label {key!r}: value must be a string of at most "
                f"{MAX_LABEL_VALUE} characters without NUL",
                reason="invalid_label",
            )


def get_device(*, session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFoundError(f"no device {device_id[:80]!r}")
    return device


def _bundle(device: Device, password: str, provisioning: Provisioning) -> str:
    """The agent config that carries ``device``'s new password and its trust anchor."""
    roots, _keys = provisioning.trust.trust_bundle()
    broker = provisioning.broker
    config = AgentConfig(
        device=DeviceSection(id=device.id, profile=device.profile),
        broker=BrokerSection(
            host=broker.host,
            port=broker.port,
            username=device.id,
            password=password,
            tls_ca=broker.tls_ca,
        ),
        trust=TrustSection(
            root=pinned_root_text(roots[-1]),
            max_artifact_bytes=provisioning.catalog.get(device.profile).max_artifact_bytes,
        ),
    )
    return render_agent_config(config)


def provision_device(
    *,
    session: Session,
    spec: DeviceSpec,
    provisioning: Provisioning,
    actor: str,
    now: float,
) -> Provisioned:
    _check_spec(spec, provisioning.catalog)
    if session.get(Device, spec.device_id) is not None:
        raise ConflictError(
            f"device {spec.device_id!r} exists; rotate its credentials to get a new bundle"
        )
    device = Device(
        id=spec.device_id,
        profile=spec.profile,
        state=DeviceState.PROVISIONED,
        tags=sorted(set(spec.tags)),
        labels=dict(spec.labels),
        created_at=now,
        updated_at=now,
        running=[],
    )
    session.add(device)
    session.flush()
    _audit(session, actor, "device.provision", device, now, before=None)
    password = provisioning.accounts.provision_device(device.id)
    try:
        bundle = _bundle(device, password, provisioning)
        session.commit()
    except BaseException:
        session.rollback()
        provisioning.accounts.revoke_device(spec.device_id)
        raise
    return Provisioned(device=device, bundle=bundle)


def rotate_credentials(
    *,
    session: Session,
    device_id: str,
    provisioning: Provisioning,
    actor: str,
    now: float,
) -> Provisioned:
    """New password and bundle; also how a revoked device is brought back."""
    device = get_device(session=session, device_id=device_id)
    before = snapshot(device)
    if device.state == DeviceState.REVOKED:
        device.state = DeviceState.PROVISIONED
        device.revoked_at = None
    device.updated_at = now
    _audit(session, actor, "device.rotate_credentials", device, now, before=before)
    bundle = _bundle(device, provisioning.accounts.provision_device(device.id), provisioning)
    session.commit()
    return Provisioned(device=device, bundle=bundle)


def revoke_device(
    *, session: Session, device_id: str, accounts: DeviceAccounts, actor: str, now: float
) -> Device:
    """Cut the device off the broker now; idempotent."""
    device = get_device(session=session, device_id=device_id)
    accounts.revoke_device(device.id)
    if device.state != DeviceState.REVOKED:
        before = snapshot(device)
        device.state = DeviceState.REVOKED
        device.revoked_at = now
        device.updated_at = now
        _audit(session, actor, "device.revoke", device, now, before=before)
    session.commit()
    return device


def update_device(
    *,
    session: Session,
    device_id: str,
    tags: Sequence[str] | None,
    labels: dict[str, str] | None,
    catalog: ProfileCatalog,
    actor: str,
    now: float,
) -> Device:
    device = get_device(session=session, device_id=device_id)
    before = snapshot(device)
    spec = DeviceSpec(
        device_id=device.id,
        profile=device.profile,
        tags=tuple(device.tags if tags is None else tags),
        labels=dict(device.labels if labels is None else labels),
    )
    _check_spec(spec, catalog)
    device.tags = sorted(set(spec.tags))
    device.labels = spec.labels
    device.updated_at = now
    _audit(session, actor, "device.update", device, now, before=before)
    session.commit()
    return device


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    state: str | None = None
    profile: str | None = None
    tag: str | None = None
    search: str | None = None
    """Substring of the device id."""


def list_devices(
    *, session: Session, where: DeviceFilter, limit: int, offset: int = 0
) -> tuple[Sequence[Device], int]:
    """A page of devices ordered by id, and the total that match."""
    query = select(Device)
    if where.state is not None:
        query = query.where(Device.state == where.state)
    if where.profile is not None:
        query = query.where(Device.profile == where.profile)
    if where.search:
        escaped = where.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Device.id.like(f"%{escaped}%", escape="\\"))
    devices: Sequence[Device] = session.scalars(query.order_by(Device.id)).all()
    if where.tag is not None:
        devices = [d for d in devices if where.tag in d.tags]
    total = len(devices)
    return devices[offset : offset + limit], total


def count_by_state(*, session: Session) -> dict[str, int]:
    rows = session.execute(select(Device.state, func.count()).group_by(Device.state)).all()
    counts = {state.value: 0 for state in DeviceState}
    counts.update({str(state): int(count) for state, count in rows})
    return counts
