"""The agent's configuration file (``/etc/edgefleet/agent.toml``).

The server writes it into a device bundle at provisioning and the agent reads
it at start-up, so its schema lives here where both can see it. Parsing is
strict (unknown keys are errors: a typo must not silently fall back to a
default on a device nobody can reach); rendering produces TOML the parser
reads back to the same value.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Annotated, Any

from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import MessageError
from edgefleet.shared.messages import Name
from edgefleet.shared.schema import Length, Pattern, Range, require
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.topics import DEVICE_ID_PATTERN

Port = Annotated[int, Range(1, 65535)]
AbsolutePath = Annotated[str, Pattern(r"/[^\x00]*"), Length(max=4096)]


@dataclass(frozen=True, slots=True)
class DeviceSection:
    id: Annotated[str, Pattern(DEVICE_ID_PATTERN)]
    profile: Name
    data_dir: AbsolutePath = "/var/lib/edgefleet"

    def __post_init__(self) -> None:
        require(".." not in self.id, f"device id {self.id!r} contains '..'", "bad_format")


@dataclass(frozen=True, slots=True)
class BrokerSection:
    host: Annotated[str, Length(min=1, max=253)]
    port: Port
    username: Annotated[str, Length(min=1, max=63)]
    password: Annotated[str, Length(min=16, max=256)]
    tls_ca: AbsolutePath | None = None
    keepalive: Annotated[int, Range(5, 3600)] = 30


@dataclass(frozen=True, slots=True)
class TrustSection:
    root: Annotated[str, Length(min=2, max=256 * 1024)]
    """The pinned root, as the canonical JSON of its signed envelope."""
    max_artifact_bytes: Annotated[int, Range(1024, 2**31)] = 64 * 1024 * 1024

    def root_envelope(self) -> SignedEnvelope:
        return SignedEnvelope.from_bytes(self.root.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class TelemetrySection:
    window_seconds: Annotated[float, Range(1.0, 3600.0)] = 60.0
    outbox_max_bytes: Annotated[int, Range(64 * 1024, 2**31)] = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class InferenceSection:
    """Where applications on the device reach the local inference API.

    A UNIX socket, when set, replaces the TCP listener: file permissions then
    decide who may call it, which is what a shared board wants.
    """

    host: Annotated[str, Length(min=1, max=253)] = "127.0.0.1"
    port: Annotated[int, Range(0, 65535)] = 8765
    unix_socket: AbsolutePath | None = None
    max_batch: Annotated[int, Range(1, 65536)] = 256


@dataclass(frozen=True, slots=True)
class UpdateSection:
    """How cautious the agent is with a new model before it commits to it."""

    probation_seconds: Annotated[float, Range(0.0, 86400.0)] = 300.0
    probation_min_inferences: Annotated[int, Range(0, 10**9)] = 50
    max_error_rate: Annotated[float, Range(0.0, 1.0)] = 0.05
    max_latency_ratio: Annotated[float, Range(1.0, 1000.0)] = 3.0
    shadow_samples: Annotated[int, Range(1, 10**6)] = 200
    download_timeout_seconds: Annotated[float, Range(1.0, 86400.0)] = 600.0


@dataclass(frozen=True, slots=True)
class DriftSection:
    """The drift sketch's share of a (possibly metered) uplink."""

    bytes_per_hour: Annotated[int, Range(0, 2**31)] = 256 * 1024
    reservoir_size: Annotated[int, Range(0, 256)] = 16
    hard_examples: Annotated[int, Range(0, 256)] = 8


@dataclass(frozen=True, slots=True)
class AgentConfig:
    device: DeviceSection
    broker: BrokerSection
    trust: TrustSection
    telemetry: TelemetrySection = TelemetrySection()
    inference: InferenceSection = InferenceSection()
    update: UpdateSection = UpdateSection()
    drift: DriftSection = DriftSection()

    def __post_init__(self) -> None:
        require(
            self.broker.username == self.device.id,
            "broker.username must be the device id (the broker ACL is keyed on it)",
        )


def parse_agent_config(text: str) -> AgentConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MessageError(f"agent config is not valid TOML: {err}", reason="bad_toml") from err
    config = schema.from_json(AgentConfig, data)
    config.trust.root_envelope()
    return config


def render_agent_config(config: AgentConfig) -> str:
    """TOML for ``config``; strings are written as JSON strings, which TOML reads alike."""
    body: dict[str, Any] = schema.to_json(config)
    lines = [
        "# edgefleet agent configuration. Generated at provisioning: keep it secret,",
        "# it holds this device's broker password.",
        "",
    ]
    for section in ("device", "broker", "trust", "telemetry", "inference", "update", "drift"):
        lines.append(f"[{section}]")
        for key, value in sorted(body[section].items()):
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot render {type(value).__name__} in the agent config")


def pinned_root_text(root: SignedEnvelope) -> str:
    return jsoncodec.canonical(schema.to_json(root)).decode("utf-8")
