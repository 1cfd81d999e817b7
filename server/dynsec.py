"""Mosquitto's dynamic-security plugin: its config file and its control commands.

Pure: data in, JSON out, and back. :mod:`edgefleet.server.broker_accounts`
sends what this module builds; the test harness writes the same initial file.

Why dynsec and not ``acl_file``: Mosquitto 2.0's ACL file never checks
SUBSCRIBE, so a device could join the server's ``$share`` group and swallow
ingest; dynsec checks every subscription, and deleting or disabling a client
disconnects it at once. Its 2.0 ACL topics know no ``%u`` substitution, so
each device gets its own role, built from :mod:`edgefleet.shared.topics`.

On 2.0.11 a subscription is checked as the client wrote it: a shared one is
matched as the whole ``$share/{group}/{filter}`` string, so the server's role
names that form explicitly. Literal ACLs must equal the filter; pattern ACLs
grant any filter they cover (``ef/v1/a/#`` covers ``ef/v1/a/{sha}/+``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from edgefleet.server.errors import BrokerError
from edgefleet.shared import jsoncodec
from edgefleet.shared.errors import MessageError, TopicError
from edgefleet.shared.topics import (
    DEVICE_READS,
    DEVICE_WRITES,
    all_artifacts_filter,
    channel_filter,
    device_topic,
    shared_subscription,
    validate_device_id,
)

SERVER_USER = "_edgefleet-server"
"""The server's broker username; the leading ``_`` keeps it out of the device-id space."""

ADMIN_USER = "_edgefleet-admin"
"""The broker username that may change accounts (and nothing else)."""

SERVER_ROLE = SERVER_USER
ADMIN_ROLE = ADMIN_USER

CONTROL_FILTER = "$CONTROL/dynamic-security/#"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
"""Where the plugin answers, at QoS 0, to every subscriber: correlate by ``correlationData``."""

SALT_BYTES = 12
"""What the plugin itself generates; 2.0 refuses a stored salt of any other length."""

DEFAULT_ITERATIONS = 101
"""What the plugin uses: checked on every CONNECT, and our passwords are random, not chosen."""

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""A ``listClients`` answer grows with the fleet; this bounds it without truncating one."""

Command = dict[str, Any]
"""One entry of a control request's ``commands`` list."""


class AclType(StrEnum):
    PUBLISH_SEND = "publishClientSend"
    PUBLISH_RECEIVE = "publishClientReceive"
    SUBSCRIBE_LITERAL = "subscribeLiteral"
    SUBSCRIBE_PATTERN = "subscribePattern"
    UNSUBSCRIBE_LITERAL = "unsubscribeLiteral"
    UNSUBSCRIBE_PATTERN = "unsubscribePattern"


@dataclass(frozen=True, slots=True)
class Acl:
    acltype: AclType
    topic: str
    allow: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype.value, "topic": self.topic, "allow": self.allow}


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A client's stored password as the plugin keeps it (all base64 but the count)."""

    password: str
    salt: str
    iterations: int


@dataclass(frozen=True, slots=True)
class Response:
    """The plugin's answer to one command; ``error`` is ``None`` on success."""

    command: str
    error: str | None
    data: Mapping[str, Any]


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> PasswordHash:
    """Hash as the plugin does: PBKDF2-HMAC-SHA512 over the UTF-8 password.

    Only the initial config file needs this; later clients are created with
    their password in the command and the broker hashes it.
    """
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return PasswordHash(_b64(digest), _b64(salt), iterations)


def is_device_username(name: str) -> bool:
    """Whether ``name`` is a device id, the only usernames devices get."""
    try:
        validate_device_id(name)
    except TopicError:
        return False
    return True


def device_role(device_id: str) -> str:
    return f"edgefleet-device:{validate_device_id(device_id)}"


def device_acls(device_id: str) -> tuple[Acl, ...]:
    """Write its own reports; read its own ``desired``/``cmd`` and every artifact chunk."""
    writes = [device_topic(device_id, channel) for channel in sorted(DEVICE_WRITES)]
    reads = [device_topic(device_id, channel) for channel in sorted(DEVICE_READS)]
    return (
        *(Acl(AclType.PUBLISH_SEND, topic) for topic in writes),
        *_readable(reads, literal=True),
        *_readable([all_artifacts_filter()], literal=False),
    )


def server_acls() -> tuple[Acl, ...]:
    """Read every device's reports (shared or not), write every ``desired``/``cmd``/chunk.

    One server reads the plain filters (its persistent session keeps them across a
    broker restart); replicas split the shared ones (``ingest_shared``).
    """
    reports = sorted(DEVICE_WRITES)
    filters = [
        f for channel in reports for f in (shared_subscription(channel), channel_filter(channel))
    ]
    return (
        *_readable(filters, literal=False, receive=[channel_filter(c) for c in reports]),
        *(Acl(AclType.PUBLISH_SEND, channel_filter(c)) for c in sorted(DEVICE_READS)),
        Acl(AclType.PUBLISH_SEND, all_artifacts_filter()),
    )


def admin_acls() -> tuple[Acl, ...]:
    return (Acl(AclType.PUBLISH_SEND, CONTROL_FILTER), *_readable([CONTROL_FILTER], literal=False))


def initial_config(*, admin: PasswordHash, server: PasswordHash) -> dict[str, Any]:
    """The plugin's file before its first start; from then on the broker owns and rewrites it.

    Every access not granted by a role is denied, ``$CONTROL`` included.
    """
    for username in (ADMIN_USER, SERVER_USER):
        if is_device_username(username):
            raise ValueError(f"{username!r} is a valid device id: a device could take its rights")
    return {
        "defaultACLAccess": dict.fromkeys(_DEFAULT_ACCESS_KEYS, False),
        "clients": [
            _stored_client(ADMIN_USER, admin, ADMIN_ROLE),
            _stored_client(SERVER_USER, server, SERVER_ROLE),
        ],
        "groups": [],
        "roles": [_role(ADMIN_ROLE, admin_acls()), _role(SERVER_ROLE, server_acls())],
    }


def create_role(rolename: str, acls: Iterable[Acl]) -> Command:
    return {"command": "createRole", **_role(rolename, acls)}


def modify_role(rolename: str, acls: Iterable[Acl]) -> Command:
    """Replace every ACL of ``rolename`` in one step."""
    return {"command": "modifyRole", **_role(rolename, acls)}


def delete_role(rolename: str) -> Command:
    """Also disconnects every client that had the role."""
    return {"command": "deleteRole", "rolename": rolename}


def create_client(username: str, password: str, *, roles: Sequence[str]) -> Command:
    return {
        "command": "createClient",
        "username": username,
        "password": _nonempty(password),
        "roles": [{"rolename": role} for role in roles],
    }


def modify_client(username: str, password: str, *, roles: Sequence[str]) -> Command:
    """Credential rotation: a new password and exactly these roles.

    The broker disconnects the client's sessions, so none outlives its password.
    """
    return {**create_client(username, password, roles=roles), "command": "modifyClient"}


def delete_client(username: str) -> Command:
    """Removes the client and disconnects its sessions."""
    return {"command": "deleteClient", "username": username}


def disable_client(username: str) -> Command:
    """Refuses the client's logins and disconnects its sessions; it keeps its roles."""
    return {"command": "disableClient", "username": username}


def enable_client(username: str) -> Command:
    return {"command": "enableClient", "username": username}


def get_client(username: str) -> Command:
    return {"command": "getClient", "username": username}


def list_clients() -> Command:
    return {"command": "listClients", "verbose": False}


def request_payload(commands: Sequence[Command], token: str) -> bytes:
    """One control message; command ``i`` carries ``correlationData`` ``{token}:{i}``.

    The plugin echoes that string in the body, not as an MQTT property: it is
    the only way to tell our answers from another replica's.
    """
    if not commands:
        raise ValueError("a control request needs at least one command")
    tagged = [{**command, "correlationData": f"{token}:{i}"} for i, command in enumerate(commands)]
    return jsoncodec.canonical({"commands": tagged})


def answers(payload: bytes, token: str) -> bool:
    """Whether ``payload`` (from :data:`RESPONSE_TOPIC`) answers the request tagged ``token``.

    Runs on the MQTT network thread, so it only looks for the token (random,
    hex, unescaped in JSON); :func:`parse_responses` then checks everything.
    """
    return token.encode("ascii") in payload


def parse_responses(payload: bytes, token: str, count: int) -> list[Response]:
    """The answers to the ``count`` commands sent as ``token``, in the order sent."""
    try:
        tree = jsoncodec.parse(payload, max_bytes=MAX_RESPONSE_BYTES)
    except MessageError as err:
        raise BrokerError(f"dynamic-security answer is not valid JSON: {err}") from err
    entries = tree.get("responses") if isinstance(tree, dict) else None
    if not isinstance(entries, list):
        raise BrokerError("dynamic-security answer has no 'responses' list")
    found: dict[str, Response] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("correlationData"), str):
            error, data = entry.get("error"), entry.get("data", {})
            found[entry["correlationData"]] = Response(
                command=str(entry.get("command", "")),
                error=error if isinstance(error, str) else None,
                data=data if isinstance(data, dict) else {},
            )
    try:
        return [found[f"{token}:{i}"] for i in range(count)]
    except KeyError as err:
        raise BrokerError(f"dynamic-security answered no command {err.args[0]!r}") from None


_DEFAULT_ACCESS_KEYS = ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe")


def _readable(
    filters: Sequence[str], *, literal: bool, receive: Sequence[str] | None = None
) -> list[Acl]:
    """Subscribe, unsubscribe and receive rights on ``filters``."""
    sub, unsub = (
        (AclType.SUBSCRIBE_LITERAL, AclType.UNSUBSCRIBE_LITERAL)
        if literal
        else (AclType.SUBSCRIBE_PATTERN, AclType.UNSUBSCRIBE_PATTERN)
    )
    return [
        *(Acl(sub, f) for f in filters),
        *(Acl(unsub, f) for f in filters),
        *(Acl(AclType.PUBLISH_RECEIVE, f) for f in (filters if receive is None else receive)),
    ]


def _role(rolename: str, acls: Iterable[Acl]) -> dict[str, Any]:
    return {"rolename": rolename, "acls": [acl.to_json() for acl in acls]}


def _stored_client(username: str, password: PasswordHash, role: str) -> dict[str, Any]:
    return {
        "username": username,
        "password": password.password,
        "salt": password.salt,
        "iterations": password.iterations,
        "roles": [{"rolename": role}],
    }


def _nonempty(password: str) -> str:
    if not password:
        raise ValueError("an empty password is not allowed")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
