from __future__ import annotations

import dataclasses

import pytest

from edgefleet.shared.agent_config import (
    AgentConfig,
    BrokerSection,
    DeviceSection,
    DriftSection,
    InferenceSection,
    TrustSection,
    UpdateSection,
    parse_agent_config,
    pinned_root_text,
    render_agent_config,
)
from edgefleet.shared.errors import MessageError
from tests.shared.factories import Fleet


def config() -> AgentConfig:
    return AgentConfig(
        device=DeviceSection(id="cam-7", profile="rpi4"),
        broker=BrokerSection(
            host="broker.example",
            port=8883,
            username="cam-7",
            password="p" * 24,
            tls_ca="/etc/edgefleet/ca.pem",
        ),
        trust=TrustSection(root=pinned_root_text(Fleet().root_v1)),
    )


def test_rendered_config_parses_back_to_the_same_value() -> None:
    original = config()
    text = render_agent_config(original)
    assert parse_agent_config(text) == original
    assert 'password = "pppppppppppppppppppppppp"' in text


def test_pinned_root_is_usable_as_a_trust_anchor() -> None:
    from edgefleet.shared.trust import TrustStore

    parsed = parse_agent_config(render_agent_config(config()))
    assert TrustStore.pin(parsed.trust.root_envelope()).root.version == 1


def test_strings_with_quotes_and_newlines_survive() -> None:
    tricky = dataclasses.replace(config().broker, password='a"b\\c\nd\te' + "x" * 16)
    original = dataclasses.replace(config(), broker=tricky)
    assert parse_agent_config(render_agent_config(original)) == original


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.replace("[broker]", "[broker]\nretries = 3"), "unknown_field"),
        (lambda t: t.replace('id = "cam-7"', 'id = "CAM/7"'), "bad_format"),
        (
            lambda t: t.replace('id = "cam-7"', 'id = "cam..7"').replace(
                'username = "cam-7"', 'username = "cam..7"'
            ),
            "bad_format",
        ),
        (lambda t: t.replace('username = "cam-7"', 'username = "cam-8"'), "inconsistent"),
        (lambda t: t.replace("port = 8883", "port = 0"), "out_of_range"),
        (
            lambda t: t.replace('data_dir = "/var/lib/edgefleet"', 'data_dir = "relative"'),
            "bad_format",
        ),
        (lambda t: t.replace("[trust]", "[trust"), "bad_toml"),
        (lambda t: t.replace("root = ", 'root = "{}" #'), "missing_field"),
    ],
    ids=[
        "unknown-key",
        "bad-device-id",
        "dotdot-device-id",
        "username-mismatch",
        "port-zero",
        "relative-path",
        "bad-toml",
        "root-not-an-envelope",
    ],
)
def test_bad_configs_are_refused_with_a_reason(edit, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_agent_config(edit(render_agent_config(config())))
    assert caught.value.reason == reason


def test_inference_update_and_drift_sections_round_trip() -> None:
    original = dataclasses.replace(
        config(),
        inference=InferenceSection(unix_socket="/run/edgefleet/agent.sock", max_batch=32),
        update=UpdateSection(probation_seconds=30.0, max_error_rate=0.1),
        drift=DriftSection(bytes_per_hour=0),
    )
    parsed = parse_agent_config(render_agent_config(original))
    assert parsed == original
    assert parsed.inference.unix_socket == "/run/edgefleet/agent.sock"


def test_sections_left_out_take_their_defaults() -> None:
    text = render_agent_config(config())
    trimmed = text.split("[inference]")[0]
    parsed = parse_agent_config(trimmed)
    assert parsed.update == UpdateSection()
    assert parsed.inference.port == 8765
