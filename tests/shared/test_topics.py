"""Topic names: strict building and parsing, device id validation, MQTT filter matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.shared import topics
from edgefleet.shared.errors import EdgefleetError, TopicError
from edgefleet.shared.topics import (
    MAX_CHUNK_INDEX,
    ArtifactTopic,
    Channel,
    DeviceTopic,
    artifact_filter,
    artifact_topic,
    channel_filter,
    device_topic,
    parse_topic,
    shared_subscription,
    topic_matches,
    validate_device_id,
    validate_sha256,
)

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DEVICE_ID_RE = r"[a-z0-9][a-z0-9_.-]{0,62}"


def rejects(call, *args) -> TopicError:
    with pytest.raises(TopicError) as caught:
        call(*args)
    assert type(caught.value) is TopicError
    assert caught.value.reason == "bad_topic"
    return caught.value


# --- device ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device_id",
    [
        pytest.param("a", id="one-char"),
        pytest.param("7", id="one-digit"),
        pytest.param("a" * 63, id="63-chars"),
        pytest.param("rpi4-kitchen_01", id="dash-underscore"),
        pytest.param("dev.1.2", id="single-dots"),
        pytest.param("a.", id="trailing-dot"),
        pytest.param("a-", id="trailing-dash"),
        pytest.param("0-0_0.0", id="all-separators"),
    ],
)
def test_valid_device_ids_pass_unchanged(device_id: str) -> None:
    assert validate_device_id(device_id) == device_id


@pytest.mark.parametrize(
    "device_id",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 64, id="64-chars"),
        pytest.param("Dev1", id="uppercase"),
        pytest.param("dev/1", id="slash"),
        pytest.param("dev+", id="plus"),
        pytest.param("dev#", id="hash"),
        pytest.param("+", id="plus-alone"),
        pytest.param("#", id="hash-alone"),
        pytest.param("dev\0x", id="nul"),
        pytest.param(".dev", id="leading-dot"),
        pytest.param("-dev", id="leading-dash"),
        pytest.param("_dev", id="leading-underscore"),
        pytest.param("a..b", id="double-dot"),
        pytest.param("a..", id="trailing-double-dot"),
        pytest.param("..", id="dot-dot"),
        pytest.param("dev 1", id="space"),
        pytest.param("dev1\n", id="trailing-newline"),
        pytest.param("dév", id="non-ascii"),
        pytest.param("dev\u212a", id="kelvin-sign"),
        pytest.param("$sys", id="dollar"),
        pytest.param("dev:1", id="colon"),
    ],
)
def test_invalid_device_ids_are_refused(device_id: str) -> None:
    err = rejects(validate_device_id, device_id)
    assert repr(device_id) in str(err)


@pytest.mark.parametrize(
    "device_id",
    [
        pytest.param(None, id="none"),
        pytest.param(1, id="int"),
        pytest.param(b"dev", id="bytes"),
        pytest.param(["dev"], id="list"),
    ],
)
def test_non_string_device_ids_are_refused(device_id: object) -> None:
    rejects(validate_device_id, device_id)


def test_topic_error_belongs_to_the_tree() -> None:
    assert issubclass(TopicError, EdgefleetError)


# --- building and parsing ---------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_device_topic_round_trip(channel: Channel) -> None:
    topic = device_topic("rpi4-kitchen_01", channel)
    assert topic == f"ef/v1/d/rpi4-kitchen_01/{channel.value}"
    assert parse_topic(topic) == DeviceTopic("rpi4-kitchen_01", channel)


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_device_topic_accepts_the_plain_channel_string(channel: Channel) -> None:
    assert device_topic("dev", channel.value) == device_topic("dev", channel)  # type: ignore[arg-type]


def test_parsed_channel_is_the_enum_member() -> None:
    parsed = parse_topic("ef/v1/d/dev/state")
    assert isinstance(parsed, DeviceTopic)
    assert parsed.channel is Channel.STATE


def test_channel_sets_split_the_channels() -> None:
    assert topics.DEVICE_WRITES | topics.DEVICE_READS == set(Channel)
    assert not topics.DEVICE_WRITES & topics.DEVICE_READS


@pytest.mark.parametrize(
    "chunk", [0, 1, 9, 10, 4095, 999_999, MAX_CHUNK_INDEX], ids=lambda c: f"chunk-{c}"
)
def test_artifact_topic_round_trip(chunk: int) -> None:
    topic = artifact_topic(SHA, chunk)
    assert topic == f"ef/v1/a/{SHA}/{chunk}"
    assert parse_topic(topic) == ArtifactTopic(SHA, chunk)


@pytest.mark.parametrize(
    "device_id",
    [
        pytest.param("", id="empty"),
        pytest.param("a/b", id="slash"),
        pytest.param("+", id="plus"),
        pytest.param("#", id="hash"),
        pytest.param("a..b", id="double-dot"),
    ],
)
@pytest.mark.parametrize("channel", [Channel.STATE, Channel.DESIRED], ids=lambda c: c.value)
def test_device_topic_refuses_unsafe_ids(device_id: str, channel: Channel) -> None:
    rejects(device_topic, device_id, channel)


@pytest.mark.parametrize(
    ("sha256", "chunk"),
    [
        pytest.param(SHA.upper(), 0, id="uppercase-sha"),
        pytest.param(SHA[:-1], 0, id="short-sha"),
        pytest.param(SHA + "0", 0, id="long-sha"),
        pytest.param(SHA[:-1] + "g", 0, id="non-hex-sha"),
        pytest.param("", 0, id="empty-sha"),
        pytest.param(None, 0, id="none-sha"),
        pytest.param(SHA, -1, id="negative-chunk"),
        pytest.param(SHA, MAX_CHUNK_INDEX + 1, id="chunk-over-max"),
        pytest.param(SHA, True, id="bool-chunk"),
        pytest.param(SHA, 1.0, id="float-chunk"),
        pytest.param(SHA, "1", id="str-chunk"),
    ],
)
def test_artifact_topic_refuses(sha256: object, chunk: object) -> None:
    rejects(artifact_topic, sha256, chunk)


@pytest.mark.parametrize(
    "sha256",
    [
        pytest.param(SHA.upper(), id="uppercase"),
        pytest.param(SHA[:32], id="short"),
        pytest.param(SHA + "\n", id="trailing-newline"),
        pytest.param(1, id="int"),
    ],
)
def test_validate_sha256_refuses(sha256: object) -> None:
    rejects(validate_sha256, sha256)


def test_validate_sha256_returns_the_digest() -> None:
    assert validate_sha256(SHA) == SHA


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("ef/v2/d/dev/state", id="other-version"),
        pytest.param("xx/v1/d/dev/state", id="other-namespace"),
        pytest.param("/ef/v1/d/dev/state", id="leading-slash"),
        pytest.param("ef/v1", id="namespace-only"),
        pytest.param("ef/v1/", id="namespace-slash"),
        pytest.param("", id="empty"),
        pytest.param("EF/v1/d/dev/state", id="uppercase-namespace"),
        pytest.param("$share/edgefleet/ef/v1/d/dev/state", id="shared-subscription"),
        pytest.param("ef/v1/d/dev", id="missing-level"),
        pytest.param("ef/v1/d/dev/state/", id="trailing-slash"),
        pytest.param("ef/v1/d/dev/state/x", id="extra-level"),
        pytest.param("ef/v1/d//state", id="empty-device-id"),
        pytest.param("ef/v1/d/Dev/state", id="uppercase-device-id"),
        pytest.param("ef/v1/d/a..b/state", id="double-dot-device-id"),
        pytest.param("ef/v1/d/+/state", id="wildcard-device-id"),
        pytest.param("ef/v1/d/#", id="multi-level-wildcard"),
        pytest.param("ef/v1/d/dev/reboot", id="unknown-channel"),
        pytest.param("ef/v1/d/dev/State", id="uppercase-channel"),
        pytest.param("ef/v1/d/dev/+", id="wildcard-channel"),
        pytest.param("ef/v1/d/dev/", id="empty-channel"),
        pytest.param("ef/v1/x/dev/state", id="unknown-kind"),
        pytest.param("ef/v1/D/dev/state", id="uppercase-kind"),
        pytest.param(f"ef/v1/a/{SHA}/01", id="chunk-leading-zero"),
        pytest.param(f"ef/v1/a/{SHA}/00", id="chunk-double-zero"),
        pytest.param(f"ef/v1/a/{SHA}/-1", id="chunk-negative"),
        pytest.param(f"ef/v1/a/{SHA}/+1", id="chunk-plus-sign"),
        pytest.param(f"ef/v1/a/{SHA}/1e3", id="chunk-exponent"),
        pytest.param(f"ef/v1/a/{SHA}/1.0", id="chunk-decimal"),
        pytest.param(f"ef/v1/a/{SHA}/ 1", id="chunk-space"),
        pytest.param(f"ef/v1/a/{SHA}/1_000", id="chunk-underscore"),
        pytest.param(f"ef/v1/a/{SHA}/\u0661", id="chunk-arabic-digit"),
        pytest.param(f"ef/v1/a/{SHA}/", id="chunk-empty"),
        pytest.param(f"ef/v1/a/{SHA}/{MAX_CHUNK_INDEX + 1}", id="chunk-over-max"),
        pytest.param(f"ef/v1/a/{SHA}/99999999", id="chunk-eight-digits"),
        pytest.param(f"ef/v1/a/{SHA}/+", id="chunk-wildcard"),
        pytest.param(f"ef/v1/a/{SHA.upper()}/0", id="sha-uppercase"),
        pytest.param(f"ef/v1/a/{SHA[:63]}/0", id="sha-short"),
        pytest.param(f"ef/v1/a/{SHA}", id="artifact-missing-chunk"),
        pytest.param(f"ef/v1/a/{SHA}/0/1", id="artifact-extra-level"),
    ],
)
def test_parse_topic_refuses(topic: str) -> None:
    rejects(parse_topic, topic)


@pytest.mark.parametrize("topic", [None, b"ef/v1/d/dev/state", 3], ids=["none", "bytes", "int"])
def test_parse_topic_refuses_non_strings(topic: object) -> None:
    rejects(parse_topic, topic)


# --- filters ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_channel_filter(channel: Channel) -> None:
    assert channel_filter(channel) == f"ef/v1/d/+/{channel.value}"


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_shared_subscription_default_group(channel: Channel) -> None:
    assert shared_subscription(channel) == f"$share/edgefleet/ef/v1/d/+/{channel.value}"


@pytest.mark.parametrize("group", ["replicas", "A-b_9", "g" * 64], ids=["word", "mixed", "64"])
def test_shared_subscription_custom_group(group: str) -> None:
    assert shared_subscription(Channel.TELEMETRY, group) == f"$share/{group}/ef/v1/d/+/telemetry"


@pytest.mark.parametrize(
    "group",
    [
        pytest.param("", id="empty"),
        pytest.param("a/b", id="slash"),
        pytest.param("+", id="plus"),
        pytest.param("#", id="hash"),
        pytest.param("g" * 65, id="65-chars"),
        pytest.param("edge fleet", id="space"),
        pytest.param("edgefleet\n", id="trailing-newline"),
    ],
)
def test_shared_subscription_refuses_bad_groups(group: str) -> None:
    rejects(shared_subscription, Channel.TELEMETRY, group)


def test_artifact_filter() -> None:
    assert artifact_filter(SHA) == f"ef/v1/a/{SHA}/+"
    assert topic_matches(artifact_filter(SHA), artifact_topic(SHA, 12))
    assert not topic_matches(artifact_filter(SHA), artifact_topic("0" * 64, 12))


@pytest.mark.parametrize(
    "sha256", [SHA.upper(), "+", "#", ""], ids=["uppercase", "plus", "hash", "empty"]
)
def test_artifact_filter_refuses_bad_digests(sha256: str) -> None:
    rejects(artifact_filter, sha256)


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_filters_match_exactly_their_channel(channel: Channel) -> None:
    for other in Channel:
        topic = device_topic("dev-1", other)
        expected = other is channel
        assert topic_matches(channel_filter(channel), topic) is expected
        assert topic_matches(shared_subscription(channel), topic) is expected


# --- topic_matches (cases after paho's matcher tests, plus $share and $-topics) -----------


@pytest.mark.parametrize(
    ("topic_filter", "topic"),
    [
        ("foo/bar", "foo/bar"),
        ("foo/+", "foo/bar"),
        ("foo/+/baz", "foo/bar/baz"),
        ("foo/+/#", "foo/bar/baz"),
        ("A/B/+/#", "A/B/B/C"),
        ("#", "foo/bar/baz"),
        ("#", "/foo/bar"),
        ("/#", "/foo/bar"),
        ("$SYS/bar", "$SYS/bar"),
        ("$SYS/#", "$SYS/broker/uptime"),
        ("$SYS/+", "$SYS/bar"),
        ("foo/#", "foo/$bar"),
        ("foo/+/baz", "foo/$bar/baz"),
        ("foo/#", "foo"),
        ("foo/#", "foo/"),
        ("foo/+", "foo/"),
        ("+/+", "/finance"),
        ("/+", "/finance"),
        ("+", "foo"),
        ("+/bar", "foo/bar"),
        ("$share/edgefleet/ef/v1/d/+/telemetry", "ef/v1/d/dev-1/telemetry"),
        ("$share/g/#", "ef/v1/d/dev-1/state"),
        ("$share/g/ef/v1/a/+/+", f"ef/v1/a/{SHA}/0"),
    ],
    ids=lambda value: value or "empty",
)
def test_topic_matches(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) is True


@pytest.mark.parametrize(
    ("topic_filter", "topic"),
    [
        ("test/6/#", "test/3"),
        ("foo/bar", "foo"),
        ("foo", "foo/bar"),
        ("foo/+", "foo/bar/baz"),
        ("foo/+/baz", "foo/bar/bar"),
        ("foo/+/#", "fo2/bar/baz"),
        ("/#", "foo/bar"),
        ("+", "/finance"),
        ("+", "foo/bar"),
        ("foo/bar", "foo/bar/"),
        ("foo/bar", "Foo/bar"),
        ("#", "$SYS/bar"),
        ("+/bar", "$SYS/bar"),
        ("+/#", "$SYS/bar"),
        ("$BOB/bar", "$SYS/bar"),
        ("$share/g/#", "$SYS/bar"),
        ("$share/g/+/bar", "$SYS/bar"),
        ("foo/#/bar", "foo/x/bar"),
        ("$share/edgefleet/ef/v1/d/+/telemetry", "ef/v1/d/dev-1/state"),
        ("$share/edgefleet/ef/v1/d/+/telemetry", "$share/edgefleet/ef/v1/d/dev-1/telemetry"),
        ("ef/v1/d/+/state", "ef/v1/d/a/b/state"),
    ],
)
def test_topic_does_not_match(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) is False


def test_device_acl_filters() -> None:
    """A device's read filters reach its own desired/cmd and every artifact, nothing else."""
    reads = [device_topic("dev-1", c) for c in topics.DEVICE_READS] + ["ef/v1/a/#"]
    mine = [device_topic("dev-1", c) for c in Channel] + [artifact_topic(SHA, 3)]
    theirs = [device_topic("dev-2", c) for c in Channel]
    readable = {t for t in mine + theirs if any(topic_matches(f, t) for f in reads)}
    assert readable == {device_topic("dev-1", c) for c in topics.DEVICE_READS} | {
        artifact_topic(SHA, 3)
    }


# --- properties -------------------------------------------------------------------------

valid_device_ids = st.from_regex(DEVICE_ID_RE, fullmatch=True).filter(lambda s: ".." not in s)


@given(device_id=valid_device_ids, channel=st.sampled_from(Channel))
def test_any_valid_device_id_round_trips(device_id: str, channel: Channel) -> None:
    topic = device_topic(device_id, channel)
    assert parse_topic(topic) == DeviceTopic(device_id, channel)
    assert topic_matches(channel_filter(channel), topic)


@given(
    candidate=st.one_of(
        st.text(max_size=70),
        st.text(alphabet="ab09_.-/+#\0A ", max_size=70),
        st.from_regex(DEVICE_ID_RE, fullmatch=True),
    )
)
def test_accepted_device_ids_are_topic_safe(candidate: str) -> None:
    try:
        validate_device_id(candidate)
    except TopicError:
        return
    assert not set(candidate) & set("/+#\0")
    assert ".." not in candidate
    assert 1 <= len(candidate) <= 63
    assert candidate[0] not in "._-"


@given(chunk=st.integers(min_value=0, max_value=MAX_CHUNK_INDEX))
def test_any_chunk_index_round_trips(chunk: int) -> None:
    assert parse_topic(artifact_topic(SHA, chunk)) == ArtifactTopic(SHA, chunk)
