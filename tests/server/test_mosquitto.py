"""Rendering of Mosquitto's password file, ACL and config.

The ACL is checked twice: here by evaluating the rendered rules with the
shared topic matcher, and in ``test_broker_acl`` against the real broker.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from edgefleet.server.mosquitto import (
    SALT_BYTES,
    SERVER_USER,
    hash_password,
    render_acl,
    render_config,
    render_password_file,
)
from edgefleet.shared.errors import TopicError
from edgefleet.shared.topics import (
    DEVICE_READS,
    DEVICE_WRITES,
    Channel,
    artifact_topic,
    device_topic,
    topic_matches,
    validate_device_id,
)
from tests.harness.broker import Credentials, MosquittoBroker

# Made by mosquitto_passwd 2.0.11 for the password "secret".
GOLDEN_SALT = base64.b64decode("UsP67BCsZWo5A+sr")
GOLDEN_HASH = (
    "$7$101$UsP67BCsZWo5A+sr$gdgiA4Hm4mTDAKIEJgMy/VUonLfCKn8L9s1KMPpTa52gKftKUs"
    "vaPQjQ0k5E+eTVGRAp8gJOB3OsYtHLgHJnBw=="
)
SHA = "ab" * 32


def test_hash_matches_mosquitto_passwd_golden_vector():
    assert hash_password("secret", salt=GOLDEN_SALT) == GOLDEN_HASH


def test_hash_matches_the_installed_mosquitto_passwd(tmp_path: Path):
    password_file = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), "someone", "pa55 wörd"],
        check=True,
        capture_output=True,
        timeout=5,
    )
    theirs = password_file.read_text().strip().split(":", 1)[1]
    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password("pa55 wörd", salt=salt) == theirs


def test_hash_uses_a_fresh_salt_each_time():
    first, second = hash_password("same"), hash_password("same")
    assert first != second
    pattern = r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}=="
    assert re.fullmatch(pattern, first)


def test_hash_records_its_iteration_count():
    assert hash_password("x", salt=GOLDEN_SALT, iterations=1000).startswith("$7$1000$")


@pytest.mark.parametrize(
    ("salt", "iterations"),
    [(b"short", 101), (b"x" * 16, 101), (b"x" * SALT_BYTES, 0)],
    ids=["salt-too-short", "salt-too-long", "no-iterations"],
)
def test_hash_refuses_what_mosquitto_would_drop(salt: bytes, iterations: int):
    with pytest.raises(ValueError, match="salt|iterations"):
        hash_password("x", salt=salt, iterations=iterations)


def test_password_file_is_sorted_one_user_a_line():
    rendered = render_password_file({"dev-b": "$7$b", "dev-a": "$7$a", SERVER_USER: "$7$s"})
    assert rendered == f"{SERVER_USER}:$7$s\ndev-a:$7$a\ndev-b:$7$b\n"


@pytest.mark.parametrize(
    ("username", "password_hash"),
    [
        ("", "$7$x"),
        ("dev:admin", "$7$x"),
        ("dev\nadmin", "$7$x"),
        ("dev\r", "$7$x"),
        ("dev", "$7$x\nadmin:$7$y"),
        ("dev", "$7$x\0"),
    ],
)
def test_password_file_refuses_injection(username: str, password_hash: str):
    with pytest.raises(ValueError, match="username|line break"):
        render_password_file({username: password_hash})


def test_server_user_can_never_be_a_device_id():
    # Devices authenticate with their id as username: a device registered
    # under the server's name would get the server's ACL.
    with pytest.raises(TopicError):
        validate_device_id(SERVER_USER)


@pytest.mark.parametrize("server_user", ["server", "edgefleet-server", "srv.1", "0"])
def test_acl_refuses_a_server_user_that_could_be_a_device(server_user: str):
    with pytest.raises(ValueError, match="valid device id"):
        render_acl(server_user)


@pytest.mark.parametrize("server_user", ["", "_admin x", "_admin\ntopic readwrite #"])
def test_acl_refuses_a_malformed_server_user(server_user: str):
    with pytest.raises(ValueError, match="invalid server user"):
        render_acl(server_user)


def _allowed(acl: str, username: str, access: str, topic: str) -> bool:
    """Evaluate a rendered ACL the way mosquitto's default ACL check does."""
    current_user = None
    for line in acl.splitlines():
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "user":
            current_user = rest
            continue
        rule_access, rule_filter = rest.split(" ")
        if keyword == "topic" and current_user != username:
            continue
        rule_filter = rule_filter.replace("%u", username)
        if rule_access in (access, "readwrite") and topic_matches(rule_filter, topic):
            return True
    return False


@pytest.mark.parametrize("channel", list(Channel))
def test_acl_device_rights_on_its_own_topics(channel: Channel):
    acl = render_acl(SERVER_USER)
    topic = device_topic("dev-a", channel)
    assert _allowed(acl, "dev-a", "write", topic) == (channel in DEVICE_WRITES)
    assert _allowed(acl, "dev-a", "read", topic) == (channel in DEVICE_READS)


@pytest.mark.parametrize("channel", list(Channel))
def test_acl_device_has_no_rights_on_other_devices(channel: Channel):
    acl = render_acl(SERVER_USER)
    topic = device_topic("dev-b", channel)
    assert not _allowed(acl, "dev-a", "write", topic)
    assert not _allowed(acl, "dev-a", "read", topic)


def test_acl_devices_read_but_never_write_artifacts():
    acl = render_acl(SERVER_USER)
    assert _allowed(acl, "dev-a", "read", artifact_topic(SHA, 7))
    assert not _allowed(acl, "dev-a", "write", artifact_topic(SHA, 7))


@pytest.mark.parametrize(
    "topic", [device_topic("dev-a", channel) for channel in Channel] + [artifact_topic(SHA, 0)]
)
def test_acl_server_reads_and_writes_the_whole_namespace(topic: str):
    acl = render_acl(SERVER_USER)
    assert _allowed(acl, SERVER_USER, "read", topic)
    assert _allowed(acl, SERVER_USER, "write", topic)


def test_acl_grants_nothing_outside_the_namespace():
    acl = render_acl(SERVER_USER)
    for username in ("dev-a", SERVER_USER):
        assert not _allowed(acl, username, "read", "$SYS/broker/clients/connected")
        assert not _allowed(acl, username, "write", "other/topic")


def _config(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 1883,
        "password_file": "/etc/edgefleet/passwd",
        "acl_file": "/etc/edgefleet/acl",
        "log_file": None,
        "persistence_dir": None,
        **overrides,
    }
    return render_config(**arguments)  # type: ignore[arg-type]


def test_config_has_one_authenticated_listener():
    lines = _config().splitlines()
    assert "listener 1883 127.0.0.1" in lines
    assert [line for line in lines if line.startswith("listener")] == ["listener 1883 127.0.0.1"]
    for line in [
        "per_listener_settings false",
        "allow_anonymous false",
        "password_file /etc/edgefleet/passwd",
        "acl_file /etc/edgefleet/acl",
    ]:
        assert line in lines


@pytest.mark.parametrize(
    ("overrides", "expected", "absent"),
    [
        ({}, ["log_dest stderr", "persistence false"], "persistence_location"),
        ({"log_file": "/var/log/m.log"}, ["log_dest file /var/log/m.log"], "log_dest stderr"),
        (
            {"persistence_dir": "/var/lib/m"},
            ["persistence true", "persistence_location /var/lib/m/"],
            "persistence false",
        ),
        ({"verbose_log": True}, ["log_type all"], "log_type error"),
    ],
    ids=["defaults", "log-file", "persistence", "verbose"],
)
def test_config_options(overrides: dict[str, object], expected: list[str], absent: str):
    rendered = _config(**overrides)
    for line in expected:
        assert line in rendered.splitlines()
    assert absent not in rendered


@pytest.mark.parametrize(
    "overrides",
    [
        {"port": 0},
        {"port": 65536},
        {"host": ""},
        {"password_file": "/tmp/p\nallow_anonymous true"},
        {"acl_file": "/tmp/my acl"},
        {"log_file": "/tmp/log\n"},
        {"log_file": ""},
        {"persistence_dir": "/tmp/p dir"},
    ],
)
def test_config_refuses_values_that_would_break_a_line(overrides: dict[str, object]):
    with pytest.raises(ValueError, match="port|whitespace"):
        _config(**overrides)


def test_real_broker_accepts_the_golden_hash(broker: MosquittoBroker, device_credentials):
    # add_device returns only once the broker lets these credentials in.
    device = device_credentials(password="secret", password_hash=GOLDEN_HASH)
    assert broker.connack(device).value == 0
    assert broker.connack(Credentials(device.username, "Secret")).getName() == "Not authorized"
