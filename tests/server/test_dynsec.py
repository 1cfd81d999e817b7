"""The dynamic-security config, ACLs and control conversation, without a broker.

ACLs are evaluated here the way the 2.0 plugin does (publish: MQTT matching;
subscribe: a literal ACL equals the filter, a pattern ACL covers it; no match:
denied), so a rule that is too wide fails fast; ``test_broker_acl`` then checks
the same rules on the real broker. The last section drives
:class:`BrokerAccounts` over a fake control channel, for the answers a healthy
broker never gives.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from edgefleet.server import dynsec
from edgefleet.server.broker_accounts import BrokerAccounts
from edgefleet.server.dynsec import (
    ADMIN_USER,
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    SALT_BYTES,
    SERVER_USER,
    Acl,
    AclType,
    hash_password,
    initial_config,
)
from edgefleet.server.errors import BrokerError, InvalidInputError
from edgefleet.shared.errors import TopicError
from edgefleet.shared.topics import (
    DEVICE_READS,
    DEVICE_WRITES,
    Channel,
    all_artifacts_filter,
    artifact_filter,
    artifact_topic,
    channel_filter,
    device_topic,
    shared_subscription,
    validate_device_id,
)

# Written by `mosquitto_ctrl dynsec init` 2.0.11 for the password "adminpw".
GOLDEN_SALT = base64.b64decode("ZXwk0gbBA/hpMl8Y")
GOLDEN_HASH = (
    "0UBdDne/D1kczfsaw77EIdrvjknNwJHZzbglH9DJzULZJmE72Fi7GOH3z82dMqIM5cgcygN84pisEUNAbzCXgw=="
)
SHA = "ab" * 32


def _covers(pattern: str, topic_filter: str) -> bool:
    """Whether a subscribe pattern ACL grants ``topic_filter`` (the plugin's sub_acl_check)."""
    acl, sub = pattern.split("/"), topic_filter.split("/")
    for i, level in enumerate(acl):
        if level == "#":
            return True
        if i >= len(sub) or sub[i] == "#" or level not in ("+", sub[i]):
            return False
    return len(acl) == len(sub)


def _matches(topic_filter: str, topic: str) -> bool:
    return "+" not in topic and "#" not in topic and _covers(topic_filter, topic)


def _allowed(acls: Sequence[Acl], access: str, topic: str) -> bool:
    checks: dict[str, list[tuple[AclType, Callable[[str, str], bool]]]] = {
        "publish": [(AclType.PUBLISH_SEND, _matches)],
        "receive": [(AclType.PUBLISH_RECEIVE, _matches)],
        "subscribe": [
            (AclType.SUBSCRIBE_LITERAL, str.__eq__),
            (AclType.SUBSCRIBE_PATTERN, _covers),
        ],
        "unsubscribe": [
            (AclType.UNSUBSCRIBE_LITERAL, str.__eq__),
            (AclType.UNSUBSCRIBE_PATTERN, _covers),
        ],
    }
    for acltype, check in checks[access]:
        for acl in acls:
            if acl.acltype is acltype and check(acl.topic, topic):
                return acl.allow
    return False  # the initial config denies by default


# -- passwords ---------------------------------------------------------------


def test_hash_matches_mosquitto_ctrl_golden_vector():
    hashed = hash_password("adminpw", salt=GOLDEN_SALT)
    assert (hashed.password, hashed.salt, hashed.iterations) == (
        GOLDEN_HASH,
        "ZXwk0gbBA/hpMl8Y",
        101,
    )


def test_hash_matches_the_installed_mosquitto_ctrl(tmp_path: Path):
    target = tmp_path / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(target), "someone", "pa55 wörd"],
        check=True,
        capture_output=True,
        timeout=5,
    )
    [theirs] = json.loads(target.read_text())["clients"]
    ours = hash_password(
        "pa55 wörd", salt=base64.b64decode(theirs["salt"]), iterations=theirs["iterations"]
    )
    assert (ours.password, ours.salt) == (theirs["password"], theirs["salt"])


def test_hash_uses_a_fresh_salt_of_the_plugins_length():
    first, second = hash_password("same"), hash_password("same")
    assert first.salt != second.salt
    assert len(base64.b64decode(first.salt)) == SALT_BYTES
    assert len(base64.b64decode(first.password)) == 64  # SHA-512


@pytest.mark.parametrize(
    ("salt", "iterations"),
    [(b"short", 101), (b"x" * 16, 101), (b"x" * SALT_BYTES, 0)],
    ids=["salt-too-short", "salt-too-long", "no-iterations"],
)
def test_hash_refuses_what_the_plugin_would_drop(salt: bytes, iterations: int):
    with pytest.raises(ValueError, match="salt|iterations"):
        hash_password("x", salt=salt, iterations=iterations)


# -- initial config ----------------------------------------------------------


def _initial() -> dict[str, Any]:
    return initial_config(admin=hash_password("a"), server=hash_password("s"))


def test_initial_config_denies_everything_by_default():
    assert _initial()["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": False,
    }


def test_initial_config_has_exactly_the_admin_and_the_server():
    config = json.loads(json.dumps(_initial()))  # what gets written must be plain JSON
    clients = {c["username"]: c for c in config["clients"]}
    assert set(clients) == {ADMIN_USER, SERVER_USER}
    roles = {r["rolename"]: r for r in config["roles"]}
    for client in clients.values():
        assert set(client) >= {"password", "salt", "iterations"}
        [role] = client["roles"]
        assert role["rolename"] in roles


@pytest.mark.parametrize("name", ["SERVER_USER", "ADMIN_USER"])
def test_service_users_can_never_be_device_ids(name: str, monkeypatch: pytest.MonkeyPatch):
    # Devices log in with their id: one registered under a service's name would get its rights.
    with pytest.raises(TopicError):
        validate_device_id(getattr(dynsec, name))
    monkeypatch.setattr(dynsec, name, "server")
    with pytest.raises(ValueError, match="valid device id"):
        _initial()


# -- device ACLs -------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel))
def test_device_rights_on_its_own_topics(channel: Channel):
    acls = dynsec.device_acls("dev-a")
    topic = device_topic("dev-a", channel)
    assert _allowed(acls, "publish", topic) == (channel in DEVICE_WRITES)
    assert _allowed(acls, "receive", topic) == (channel in DEVICE_READS)
    assert _allowed(acls, "subscribe", topic) == (channel in DEVICE_READS)
    assert _allowed(acls, "unsubscribe", topic) == (channel in DEVICE_READS)


@pytest.mark.parametrize("channel", list(Channel))
def test_device_has_no_rights_on_other_devices(channel: Channel):
    acls = dynsec.device_acls("dev-a")
    topic = device_topic("dev-b", channel)
    for access in ("publish", "receive", "subscribe"):
        assert not _allowed(acls, access, topic)


def test_device_reads_but_never_writes_artifacts():
    acls = dynsec.device_acls("dev-a")
    assert _allowed(acls, "subscribe", all_artifacts_filter())
    assert _allowed(acls, "subscribe", artifact_filter(SHA))
    assert _allowed(acls, "receive", artifact_topic(SHA, 7))
    assert not _allowed(acls, "publish", artifact_topic(SHA, 7))


@pytest.mark.parametrize(
    "topic_filter",
    [
        *(shared_subscription(channel) for channel in Channel),
        *(channel_filter(channel) for channel in Channel),
        "#",
        "ef/v1/#",
        "ef/v1/d/dev-a/#",
        "ef/v1/d/dev-a/+",
        "$CONTROL/dynamic-security/#",
    ],
)
def test_device_cannot_subscribe_wider_than_its_own_topics(topic_filter: str):
    assert not _allowed(dynsec.device_acls("dev-a"), "subscribe", topic_filter)


@pytest.mark.parametrize("device_id", ["a/b", "+", "#", "", "Dev", "_edgefleet-server", "a..b"])
def test_device_role_refuses_ids_that_could_widen_it(device_id: str):
    with pytest.raises(TopicError):
        dynsec.device_acls(device_id)
    with pytest.raises(TopicError):
        dynsec.device_role(device_id)


# -- server and admin ACLs ---------------------------------------------------


@pytest.mark.parametrize("channel", sorted(DEVICE_WRITES))
def test_server_reads_every_report_shared_or_not(channel: Channel):
    acls = dynsec.server_acls()
    assert _allowed(acls, "subscribe", shared_subscription(channel))
    assert _allowed(acls, "subscribe", channel_filter(channel))
    assert _allowed(acls, "unsubscribe", shared_subscription(channel))
    assert _allowed(acls, "receive", device_topic("dev-a", channel))
    assert not _allowed(acls, "publish", device_topic("dev-a", channel))


@pytest.mark.parametrize("channel", sorted(DEVICE_READS))
def test_server_writes_every_devices_desired_and_cmd(channel: Channel):
    acls = dynsec.server_acls()
    assert _allowed(acls, "publish", device_topic("dev-a", channel))
    assert not _allowed(acls, "subscribe", channel_filter(channel))


def test_server_writes_artifacts_and_nothing_outside_the_namespace():
    acls = dynsec.server_acls()
    assert _allowed(acls, "publish", artifact_topic(SHA, 0))
    for topic in ("other/topic", CONTROL_TOPIC, "$SYS/broker/uptime"):
        assert not _allowed(acls, "publish", topic)
    for topic_filter in ("#", "ef/v1/#", "$CONTROL/dynamic-security/#", "$share/x/ef/v1/d/+/state"):
        assert not _allowed(acls, "subscribe", topic_filter)


def test_admin_only_talks_to_the_plugin():
    acls = dynsec.admin_acls()
    assert _allowed(acls, "publish", CONTROL_TOPIC)
    assert _allowed(acls, "subscribe", RESPONSE_TOPIC)
    assert _allowed(acls, "receive", RESPONSE_TOPIC)
    assert not _allowed(acls, "publish", device_topic("dev-a", Channel.DESIRED))
    assert not _allowed(acls, "subscribe", channel_filter(Channel.TELEMETRY))


# -- control commands --------------------------------------------------------


def test_request_payload_tags_each_command_in_order():
    payload = dynsec.request_payload(
        [dynsec.get_client("dev-a"), dynsec.delete_client("dev-a")], "t0k"
    )
    commands = json.loads(payload)["commands"]
    assert [(c["command"], c["correlationData"]) for c in commands] == [
        ("getClient", "t0k:0"),
        ("deleteClient", "t0k:1"),
    ]
    assert b" " not in payload  # canonical: compact, sorted


def test_request_payload_needs_a_command():
    with pytest.raises(ValueError, match="at least one"):
        dynsec.request_payload([], "t")


def test_client_commands_carry_password_and_roles():
    assert dynsec.create_client("dev-a", "pw", roles=["r"]) == {
        "command": "createClient",
        "username": "dev-a",
        "password": "pw",
        "roles": [{"rolename": "r"}],
    }
    assert dynsec.modify_client("dev-a", "pw", roles=["r"])["command"] == "modifyClient"


@pytest.mark.parametrize(
    "build",
    [
        lambda: dynsec.create_client("dev-a", "", roles=[]),
        lambda: dynsec.modify_client("dev-a", "", roles=[]),
    ],
)
def test_empty_passwords_are_refused(build: Callable[[], object]):
    with pytest.raises(ValueError, match="empty password"):
        build()


def test_role_commands_carry_the_acls():
    acls = dynsec.device_acls("dev-a")
    created = dynsec.create_role("r", acls)
    assert created["command"] == "createRole"
    assert created["acls"] == [acl.to_json() for acl in acls]
    assert dynsec.modify_role("r", acls)["acls"] == created["acls"]


def _answer(*responses: dict[str, Any]) -> bytes:
    return json.dumps({"responses": list(responses)}, separators=(",", ":")).encode()


def test_parse_responses_in_the_order_sent_and_skips_others():
    payload = _answer(
        {"command": "getClient", "error": "Client not found", "correlationData": "other:0"},
        {"command": "deleteRole", "correlationData": "mine:1"},
        {"command": "listClients", "data": {"clients": ["a"]}, "correlationData": "mine:0"},
    )
    assert dynsec.answers(payload, "mine")
    first, second = dynsec.parse_responses(payload, "mine", 2)
    assert (first.command, first.error, dict(first.data)) == (
        "listClients",
        None,
        {"clients": ["a"]},
    )
    assert (second.command, second.error) == ("deleteRole", None)


def test_answers_only_to_its_own_token():
    assert not dynsec.answers(_answer({"command": "x", "correlationData": "other:0"}), "mine")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"responses": {}}',
        b"[]",
        _answer({"command": "getClient", "correlationData": "mine:1"}),
    ],
    ids=["invalid-json", "responses-not-a-list", "not-an-object", "answer-missing"],
)
def test_parse_responses_refuses_what_is_not_a_full_answer(payload: bytes):
    with pytest.raises(BrokerError):
        dynsec.parse_responses(payload, "mine", 1)


# -- BrokerAccounts over a fake control channel ------------------------------


class FakeControl:
    """Answers each control request with the errors scripted per command name."""

    def __init__(self, errors: dict[str, str] | None = None) -> None:
        self.errors = errors or {}
        self.sent: list[list[dict[str, Any]]] = []

    def request(self, topic, payload, response_topic, *, timeout=5.0, matches=None) -> bytes:
        assert (topic, response_topic) == (CONTROL_TOPIC, RESPONSE_TOPIC)
        commands = json.loads(payload)["commands"]
        self.sent.append(commands)
        answer = _answer(
            *(
                {
                    "command": c["command"],
                    "correlationData": c["correlationData"],
                    **({"error": self.errors[c["command"]]} if c["command"] in self.errors else {}),
                }
                for c in commands
            )
        )
        assert matches is not None
        assert matches(answer)
        return answer

    def names(self) -> list[list[str]]:
        return [[c["command"] for c in request] for request in self.sent]


def test_provisioning_a_new_device_is_one_request():
    control = FakeControl()
    password = BrokerAccounts(control).provision_device("dev-a")
    assert control.names() == [["createRole", "createClient"]]
    assert control.sent[0][1]["password"] == password
    assert len(password) >= 32


def test_reprovisioning_resets_role_password_and_enables():
    control = FakeControl(
        {"createRole": "Role already exists", "createClient": "Client already exists"}
    )
    password = BrokerAccounts(control).provision_device("dev-a")
    assert control.names() == [
        ["createRole", "createClient"],
        ["modifyRole", "modifyClient", "enableClient"],
    ]
    assert control.sent[1][1]["password"] == password


def test_a_broker_error_string_becomes_a_broker_error():
    control = FakeControl({"createClient": "Internal error"})
    with pytest.raises(BrokerError, match="createClient: Internal error") as raised:
        BrokerAccounts(control).provision_device("dev-a")
    assert raised.value.reason == "broker_refused"


def test_an_invalid_device_id_never_reaches_the_broker():
    control = FakeControl()
    with pytest.raises(InvalidInputError):
        BrokerAccounts(control).provision_device("dev/a")
    assert control.sent == []
