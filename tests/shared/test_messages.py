"""Wire messages: golden payloads, every refusal with its reason, round-trip properties."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.shared import jsoncodec, messages
from edgefleet.shared.errors import MessageError, MessageTooLargeError, UnsupportedSchemaError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import (
    ID_RE,
    MESSAGE_TYPES,
    NAME_RE,
    SHA256_RE,
    Command,
    CommandKind,
    Deployment,
    DeviceStatus,
    Drift,
    Event,
    EventKind,
    FeatureSketch,
    Histogram,
    ModelSlot,
    Sample,
    SampleReason,
    Slot,
    State,
    Telemetry,
    TelemetryWindow,
    UpdatePhase,
    UpdateProgress,
    decode,
    decode_as,
    encode,
)
from edgefleet.shared.signed import SignedEnvelope, key_id, verify_threshold
from edgefleet.shared.topics import Channel
from edgefleet.shared.trust import TrustStore
from tests.fixtures.golden import (
    BAD_DIR,
    GOLDEN_ROOT_SEED,
    GOLDEN_SIGNER_SEED,
    BadPayload,
    bad_payload,
    bad_payloads,
    golden_channel,
    golden_message,
    golden_names,
    golden_payload,
)

T = 1767225600.0
SHA = "1e01b897451e6173dde8f8db1f4104eda7de1b038e3e21c9776e23fa327db2b9"


# --- golden payloads --------------------------------------------------------------------


def test_every_channel_has_a_golden_payload() -> None:
    assert {golden_channel(name) for name in golden_names()} == set(Channel)
    assert set(MESSAGE_TYPES) == set(Channel)


@pytest.mark.parametrize("name", golden_names())
def test_golden_decodes_and_encodes_to_the_same_bytes(name: str) -> None:
    payload = golden_payload(name)
    message = decode(golden_channel(name), payload)
    assert type(message) is MESSAGE_TYPES[golden_channel(name)]
    assert encode(message) == payload
    assert decode_as(type(message), payload) == message


@pytest.mark.parametrize("name", golden_names())
def test_golden_is_canonical(name: str) -> None:
    payload = golden_payload(name)
    body = json.loads(payload)
    assert jsoncodec.canonical(body) == payload
    assert body["schema"] == messages.SCHEMA_VERSION
    assert not payload.endswith(b"\n")
    assert b"null" not in payload, "unset optionals are left out, not written as null"


@pytest.mark.parametrize("name", golden_names())
@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_golden_is_refused_on_other_channels(name: str, channel: Channel) -> None:
    if channel is golden_channel(name):
        assert decode(channel, golden_payload(name)) == golden_message(name)
        return
    with pytest.raises(MessageError) as caught:
        decode(channel, golden_payload(name))
    assert caught.value.reason in {"unknown_field", "missing_field"}


def test_golden_state() -> None:
    state = golden_message("state")
    assert isinstance(state, State)
    assert state.status is DeviceStatus.ONLINE
    assert [(m.version, m.slot, m.active) for m in state.models] == [
        (3, Slot.A, True),
        (4, Slot.B, False),
    ]
    assert state.update == UpdateProgress("kws", 4, UpdatePhase.TESTING)


def test_golden_last_will_is_bare() -> None:
    will = golden_message("state_offline_will")
    assert isinstance(will, State)
    assert will == State(status=DeviceStatus.OFFLINE, sent_at=will.sent_at)


def test_golden_telemetry_histograms_account_for_every_inference() -> None:
    telemetry = golden_message("telemetry")
    assert isinstance(telemetry, Telemetry)
    first, idle = telemetry.windows
    assert first.latency_ms is not None
    assert first.confidence is not None
    assert first.latency_ms.total == first.confidence.total == first.inferences
    assert (idle.model, idle.version, idle.latency_ms) == (None, None, None)


def test_golden_drift_sketches_match_the_count() -> None:
    drift = golden_message("drift")
    assert isinstance(drift, Drift)
    assert all(sum(f.counts) == drift.count for f in drift.features)
    assert {s.reason for s in drift.samples} == set(SampleReason)


def test_golden_events() -> None:
    failed = golden_message("events_failed")
    downloading = golden_message("events_downloading")
    assert isinstance(failed, Event)
    assert isinstance(downloading, Event)
    assert failed.kind is EventKind.FAILED
    assert failed.reason
    assert downloading.progress == 0.5


def test_golden_commands() -> None:
    cmd = golden_message("cmd")
    ping = golden_message("cmd_ping")
    assert isinstance(cmd, Command)
    assert isinstance(ping, Command)
    assert cmd.kind is CommandKind.SAMPLE_REQUEST
    assert {type(v) for v in cmd.args.values()} == {str, int, float, bool}
    assert ping.args == {}
    assert ping.expires_at is None


def _public(seed: bytes) -> Ed25519PublicKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()).public_key()


def test_golden_desired_carries_signed_manifests() -> None:
    desired = golden_message("desired")
    assert isinstance(desired, messages.Desired)
    assert [d.model for d in desired.deployments] == ["kws", "vibration-anomaly"]
    assert [d.shadow for d in desired.deployments] == [False, True]
    signer = _public(GOLDEN_SIGNER_SEED)
    for deployment in desired.deployments:
        envelope = deployment.manifest
        assert isinstance(envelope, SignedEnvelope)
        assert [len(s.keyid) for s in envelope.signatures] == [64]
        assert [len(s.sig) for s in envelope.signatures] == [88]
        assert Manifest.from_signed(envelope.signed).model == deployment.model
        signed_by = verify_threshold(envelope, {key_id(signer): signer}, 1, what="manifest")
        assert signed_by == {key_id(signer)}
    assert desired.signing_keys is not None
    root = _public(GOLDEN_ROOT_SEED)
    verify_threshold(desired.signing_keys, {key_id(root): root}, 1, what="signing keys")


def test_golden_desired_is_a_complete_chain_of_trust() -> None:
    """An agent holding nothing but the golden root can verify every deployment."""
    desired = golden_message("desired")
    assert isinstance(desired, messages.Desired)
    assert desired.signing_keys is not None
    assert len(desired.roots) == 1
    store = TrustStore.pin(desired.roots[0]).update_signing_keys(
        desired.signing_keys, now=desired.issued_at
    )
    for deployment in desired.deployments:
        manifest = store.verify_manifest(deployment.manifest, now=desired.issued_at)
        assert manifest.model == deployment.model


def test_deployment_refuses_a_manifest_for_another_model() -> None:
    desired = golden_message("desired")
    assert isinstance(desired, messages.Desired)
    with pytest.raises(MessageError, match="carries a manifest for 'kws'"):
        Deployment(model="vibration-anomaly", manifest=desired.deployments[0].manifest)


# --- bad payloads -----------------------------------------------------------------------


def test_bad_payload_files_and_index_agree() -> None:
    files = {path.stem for path in BAD_DIR.glob("*.payload")}
    indexed = {case.name for case in bad_payloads()}
    assert files <= indexed
    assert len(indexed) == len(bad_payloads()), "bad payload names repeat"


@pytest.mark.parametrize("case", bad_payloads(), ids=lambda case: case.name)
def test_bad_payload_is_refused(case: BadPayload) -> None:
    with pytest.raises(MessageError) as caught:
        decode(case.channel, case.payload)
    err = caught.value
    assert type(err) is case.error, case.why
    assert err.reason == case.reason, f"{case.why}: {err}"
    if case.path is not None:
        assert str(err).startswith(f"{case.path}: "), str(err)


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        pytest.param("state_bad_utf8", UnicodeDecodeError, id="utf8"),
        pytest.param("telemetry_truncated", json.JSONDecodeError, id="json"),
        pytest.param("drift_recursion_bomb", RecursionError, id="recursion"),
        pytest.param("events_integer_5000_digits", ValueError, id="int-digits"),
    ],
)
def test_bad_payload_errors_chain_the_library_error(name: str, cause: type) -> None:
    with pytest.raises(MessageError) as caught:
        decode(bad_payload(name).channel, bad_payload(name).payload)
    assert isinstance(caught.value.__cause__, cause)


def test_unsupported_schema_is_a_message_error_with_the_version() -> None:
    with pytest.raises(UnsupportedSchemaError) as caught:
        decode(Channel.STATE, bad_payload("state_schema_2").payload)
    assert isinstance(caught.value, MessageError)
    assert "schema version 2" in str(caught.value)


def test_explicit_null_for_an_optional_decodes_like_absence() -> None:
    body = json.loads(golden_payload("events_failed"))
    body["progress"] = None
    message = decode(Channel.EVENTS, json.dumps(body).encode())
    assert message == golden_message("events_failed")
    assert encode(message) == golden_payload("events_failed")


def test_decode_accepts_any_key_order_and_whitespace() -> None:
    body = json.loads(golden_payload("telemetry"))
    relaxed = json.dumps(dict(reversed(body.items())), indent=2).encode()
    assert decode(Channel.TELEMETRY, relaxed) == golden_message("telemetry")


def test_no_device_payload_names_a_device() -> None:
    for cls in MESSAGE_TYPES.values():
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"device_id", "device"}, cls.__name__


# --- construction enforces the cross-field rules ----------------------------------------


def window(**changes: object) -> TelemetryWindow:
    base: dict[str, object] = {"seq": 1, "start": T, "end": T + 60, "inferences": 10, "errors": 0}
    return TelemetryWindow(**{**base, **changes})  # type: ignore[arg-type]


def event(**changes: object) -> Event:
    base: dict[str, object] = {
        "seq": 1,
        "at": T,
        "kind": EventKind.HEALTHY,
        "model": "kws",
        "version": 4,
    }
    return Event(**{**base, **changes})  # type: ignore[arg-type]


def drift(**changes: object) -> Drift:
    base: dict[str, object] = {
        "seq": 1,
        "model": "kws",
        "version": 3,
        "window_start": T,
        "window_end": T + 60,
        "count": 4,
        "features": (FeatureSketch("f0", (1, 3)), FeatureSketch("f1", (2, 2))),
    }
    return Drift(**{**base, **changes})  # type: ignore[arg-type]


def deployment(model: str) -> Deployment:
    desired = golden_message("desired")
    assert isinstance(desired, messages.Desired)
    return Deployment(model=model, manifest=desired.deployments[0].manifest)


INVALID: list[typing.Any] = [
    pytest.param(lambda: Histogram((1.0, 2.0), (1, 2)), id="histogram-too-few-counts"),
    pytest.param(lambda: Histogram((1.0,), (1, 2, 3)), id="histogram-too-many-counts"),
    pytest.param(lambda: Histogram((2.0, 1.0), (1, 2, 3)), id="histogram-decreasing"),
    pytest.param(lambda: Histogram((1.0, 1.0), (1, 2, 3)), id="histogram-repeated-bound"),
    pytest.param(lambda: window(end=T - 0.001), id="window-end-before-start"),
    pytest.param(lambda: window(errors=11), id="window-errors-over-inferences"),
    pytest.param(lambda: window(model="kws"), id="window-model-without-version"),
    pytest.param(lambda: window(version=3), id="window-version-without-model"),
    pytest.param(lambda: drift(window_end=T - 1), id="drift-end-before-start"),
    pytest.param(
        lambda: drift(features=(FeatureSketch("f", (1, 1)),) * 2), id="drift-feature-twice"
    ),
    pytest.param(lambda: event(kind=EventKind.FAILED), id="failed-without-reason"),
    pytest.param(lambda: event(kind=EventKind.FAILED, reason=""), id="failed-empty-reason"),
    pytest.param(lambda: event(kind=EventKind.ROLLED_BACK), id="rolled-back-without-reason"),
    pytest.param(
        lambda: messages.Desired(
            revision=1, issued_at=T, deployments=(deployment("kws"), deployment("kws"))
        ),
        id="desired-model-twice",
    ),
    pytest.param(
        lambda: Command("c1", CommandKind.PING, issued_at=T, expires_at=T - 1),
        id="command-expires-before-issue",
    ),
    pytest.param(
        lambda: Command("c1", CommandKind.PING, issued_at=T, expires_at=T),
        id="command-expires-at-issue",
    ),
]


@pytest.mark.parametrize("build", INVALID)
def test_constructor_enforces_cross_field_rules(build: Callable[[], object]) -> None:
    with pytest.raises(MessageError) as caught:
        build()
    assert type(caught.value) is MessageError
    assert caught.value.reason == "inconsistent"


def telemetry(*items: TelemetryWindow) -> Telemetry:
    return Telemetry(sent_at=T, windows=items)


VALID_EDGES: list[typing.Any] = [
    pytest.param(
        lambda: telemetry(window(latency_ms=Histogram((0.5,), (0, 0)))), id="histogram-one-bound"
    ),
    pytest.param(lambda: telemetry(window(end=T)), id="window-zero-length"),
    pytest.param(lambda: telemetry(window(errors=10)), id="window-all-errors"),
    pytest.param(lambda: telemetry(window(inferences=0)), id="window-idle"),
    pytest.param(lambda: telemetry(window(model="kws", version=3)), id="window-model-and-version"),
    pytest.param(lambda: drift(window_end=T), id="drift-zero-length"),
    pytest.param(lambda: event(kind=EventKind.FAILED, reason="x"), id="failed-with-reason"),
    pytest.param(
        lambda: event(kind=EventKind.HEALTHY, reason="probation passed"), id="healthy-with-reason"
    ),
    pytest.param(
        lambda: Command("c1", CommandKind.PING, issued_at=T, expires_at=T + 0.001),
        id="command-expires-just-after-issue",
    ),
    pytest.param(
        lambda: messages.Desired(revision=0, issued_at=T, deployments=()), id="desired-nothing"
    ),
]


@pytest.mark.parametrize("build", VALID_EDGES)
def test_constructor_accepts_the_edge_and_round_trips(
    build: Callable[[], messages.Message],
) -> None:
    built = build()
    assert decode_as(type(built), encode(built)) == built


# --- size caps --------------------------------------------------------------------------


def big_telemetry() -> Telemetry:
    hist = Histogram(tuple(float(i) for i in range(64)), (0,) * 65)
    windows = tuple(
        window(seq=i, inferences=0, latency_ms=hist, confidence=hist) for i in range(500)
    )
    return Telemetry(sent_at=T, windows=windows)


def test_encode_refuses_a_valid_message_over_its_cap() -> None:
    telemetry = big_telemetry()
    with pytest.raises(MessageTooLargeError) as caught:
        encode(telemetry)
    assert caught.value.reason == "too_large"
    assert "Telemetry" in str(caught.value)


def command_of_size(size: int) -> Command:
    keys = ("a", "b", "c", "d", "e")
    empty = Command("c1", CommandKind.CONFIG_PUSH, issued_at=T, args=dict.fromkeys(keys, ""))
    missing = size - len(encode(empty))
    chunks = [min(4096, missing - 4096 * i) for i in range(len(keys))]
    args: dict[str, str | int | float | bool] = {
        k: "x" * max(n, 0) for k, n in zip(keys, chunks, strict=True)
    }
    return Command("c1", CommandKind.CONFIG_PUSH, issued_at=T, args=args)


def test_command_at_exactly_its_cap_round_trips() -> None:
    command = command_of_size(Command.MAX_BYTES)
    payload = encode(command)
    assert len(payload) == Command.MAX_BYTES
    assert decode(Channel.CMD, payload) == command


def test_command_one_byte_over_its_cap() -> None:
    command = dataclasses.replace(command_of_size(Command.MAX_BYTES), command_id="c12")
    with pytest.raises(MessageTooLargeError):
        encode(command)
    payload = encode(command_of_size(Command.MAX_BYTES)).replace(b'"c1"', b'"c12"')
    assert len(payload) == Command.MAX_BYTES + 1
    with pytest.raises(MessageTooLargeError):
        decode(Channel.CMD, payload)


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value)
def test_generated_too_large_payloads_sit_one_byte_over(channel: Channel) -> None:
    case = bad_payload(f"{channel.value}_too_large")
    assert len(case.payload) == MESSAGE_TYPES[channel].MAX_BYTES + 1


def test_encode_refuses_non_finite_floats() -> None:
    with pytest.raises(MessageError) as caught:
        encode(event(progress=float("nan")))
    assert caught.value.reason == "non_finite"


def test_encode_refuses_lone_surrogates() -> None:
    with pytest.raises(MessageError) as caught:
        encode(event(kind=EventKind.FAILED, reason="bad \udc80 byte"))
    assert caught.value.reason == "bad_utf8"


# --- round-trip properties --------------------------------------------------------------

names = st.from_regex(NAME_RE, fullmatch=True)
identifiers = st.from_regex(ID_RE, fullmatch=True)
digests = st.from_regex(SHA256_RE, fullmatch=True)
timestamps = st.floats(min_value=0, max_value=1e11)
counts = st.integers(min_value=0, max_value=2**53)
seqs = st.integers(min_value=0, max_value=2**63 - 1)
versions = st.integers(min_value=1, max_value=2**53)
fractions = st.floats(min_value=0.0, max_value=1.0)
texts = st.text(max_size=40)


@st.composite
def histograms(draw: st.DrawFn) -> Histogram:
    bounds = draw(
        st.lists(st.floats(min_value=-1e15, max_value=1e15), min_size=1, max_size=8, unique=True)
    )
    cells = draw(st.lists(counts, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return Histogram(tuple(sorted(bounds)), tuple(cells))


@st.composite
def windows(draw: st.DrawFn) -> TelemetryWindow:
    start, end = sorted(draw(st.lists(timestamps, min_size=2, max_size=2)))
    inferences = draw(counts)
    model = draw(st.none() | st.tuples(names, versions))
    return TelemetryWindow(
        seq=draw(seqs),
        start=start,
        end=end,
        inferences=inferences,
        errors=draw(st.integers(min_value=0, max_value=inferences)),
        model=model[0] if model else None,
        version=model[1] if model else None,
        latency_ms=draw(st.none() | histograms()),
        confidence=draw(st.none() | histograms()),
        cpu_percent=draw(st.none() | st.floats(min_value=0.0, max_value=6400.0)),
        memory_bytes=draw(st.none() | counts),
        temperature_c=draw(st.none() | st.floats(min_value=-100.0, max_value=250.0)),
    )


telemetries = st.builds(
    Telemetry, sent_at=timestamps, windows=st.lists(windows(), min_size=1, max_size=4).map(tuple)
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(EventKind))
    needs_reason = kind in (EventKind.FAILED, EventKind.ROLLED_BACK)
    reason = st.text(min_size=1, max_size=500) if needs_reason else st.none() | texts
    return Event(
        seq=draw(seqs),
        at=draw(timestamps),
        kind=kind,
        model=draw(names),
        version=draw(versions),
        rollout_id=draw(st.none() | identifiers),
        reason=draw(reason),
        progress=draw(st.none() | fractions),
    )


states = st.builds(
    State,
    status=st.sampled_from(DeviceStatus),
    sent_at=timestamps,
    agent_version=st.none() | st.text(max_size=64),
    profile=st.none() | names,
    models=st.lists(
        st.builds(ModelSlot, names, versions, digests, st.sampled_from(Slot), st.booleans()),
        max_size=3,
    ).map(tuple),
    update=st.none() | st.builds(UpdateProgress, names, versions, st.sampled_from(UpdatePhase)),
)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    issued_at = draw(st.floats(min_value=0, max_value=1e11 - 1))
    expires_at = draw(st.none() | st.floats(min_value=issued_at + 1, max_value=1e11))
    args = draw(
        st.dictionaries(
            texts,
            texts
            | st.integers(-(2**63), 2**63)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.booleans(),
            max_size=5,
        )
    )
    return Command(
        draw(identifiers), draw(st.sampled_from(CommandKind)), issued_at, expires_at, args
    )


@st.composite
def drifts(draw: st.DrawFn) -> Drift:
    start, end = sorted(draw(st.lists(timestamps, min_size=2, max_size=2)))
    sketch = st.builds(
        FeatureSketch,
        st.text(min_size=1, max_size=16),
        st.lists(counts, min_size=2, max_size=6).map(tuple),
    )
    features = draw(st.lists(sketch, max_size=4, unique_by=lambda f: f.name).map(tuple))
    sample = st.builds(
        Sample,
        identifiers,
        st.sampled_from(SampleReason),
        st.lists(st.floats(min_value=-3e38, max_value=3e38), min_size=1, max_size=6).map(tuple),
        st.none() | fractions,
    )
    return Drift(
        seq=draw(seqs),
        model=draw(names),
        version=draw(versions),
        window_start=start,
        window_end=end,
        count=draw(counts),
        features=features,
        output=draw(st.none() | sketch),
        mean_confidence=draw(st.none() | fractions),
        samples=draw(st.lists(sample, max_size=2).map(tuple)),
    )


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param(telemetries, id="telemetry"),
        pytest.param(events(), id="event"),
        pytest.param(states, id="state"),
        pytest.param(commands(), id="command"),
        pytest.param(drifts(), id="drift"),
    ],
)
def test_round_trip(strategy: st.SearchStrategy[messages.Message]) -> None:
    @settings(max_examples=60)
    @given(message=strategy)
    def check(message: messages.Message) -> None:
        payload = encode(message)
        decoded = decode_as(type(message), payload)
        assert decoded == message
        assert encode(decoded) == payload

    check()


def test_encode_refuses_what_a_receiver_would_refuse() -> None:
    with pytest.raises(MessageError) as caught:
        encode(event(seq=-1))
    assert caught.value.reason == "out_of_range"
    with pytest.raises(MessageError) as caught:
        encode(event(model="KWS"))
    assert caught.value.reason == "bad_format"


def test_encode_writes_integral_floats_as_floats_so_bytes_round_trip() -> None:
    payload = encode(telemetry(window(start=T, end=T + 60)))
    assert encode(messages.decode(Channel.TELEMETRY, payload)) == payload
    integral = encode(telemetry(window(start=int(T), end=int(T) + 60)))
    assert encode(messages.decode(Channel.TELEMETRY, integral)) == integral
    assert f'"start":{float(int(T))}'.encode() in integral
