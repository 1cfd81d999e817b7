"""What the agent is made of, and how one config becomes those parts.

:class:`Parts` is the seam: :meth:`edgefleet.agent.agent.Agent.from_config`
fills it from an :class:`AgentConfig` with :func:`build_parts`, a test may
fill it with parts of its own (a clock it advances, a transport to a broker
it stops).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.inference import InferenceService
from edgefleet.agent.outbox import Outbox
from edgefleet.agent.runtime import ModelRunner
from edgefleet.agent.storage import Storage
from edgefleet.agent.telemetry import SystemMonitor
from edgefleet.agent.transport import BrokerAddress, ExternalLoop, MqttTransport, TransportEvent
from edgefleet.agent.update.intake import DeviceFacts, Intake
from edgefleet.agent.update.updater import RunnerLoader
from edgefleet.shared import __version__
from edgefleet.shared.agent_config import AgentConfig
from edgefleet.shared.messages import DeviceStatus, State, encode
from edgefleet.shared.profiles import HardwareProfile
from edgefleet.shared.topics import Channel, device_topic


class Clock(Protocol):
    def time(self) -> float: ...
    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class Transport(Protocol):
    @property
    def connected(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def subscribe(self, topic_filter: str) -> None: ...
    def unsubscribe(self, topic_filter: str) -> None: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int: ...


class Server(Protocol):
    """The local inference API (``edgefleet.agent.local_api``): started and stopped by the agent."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Parts:
    """Everything the agent runs on."""

    config: AgentConfig
    transport: Transport
    inbox: queue.Queue[TransportEvent]
    """Where the transport's callbacks put what happened, for the agent's thread."""
    storage: Storage
    outbox: Outbox
    service: InferenceService
    load_runner: RunnerLoader
    intake: Intake
    clock: Clock
    monitor: SystemMonitor | None = None
    server: Server | None = None


def build_parts(
    config: AgentConfig,
    *,
    profile: HardwareProfile,
    clock: Clock | None = None,
    backoff: Backoff | None = None,
    server: Callable[[InferenceService], Server] | None = None,
    loop: ExternalLoop | None = None,
    inbox: queue.Queue[TransportEvent] | None = None,
) -> Parts:
    """Every part from the config: data directory (locked), outbox, runtime, broker.

    ``loop`` and ``inbox`` are the fleet simulator's: its one network thread for
    many agents, and an inbox that also tells it which agent has mail.
    """
    clock = clock or SystemClock()
    storage = Storage.open(Path(config.device.data_dir))
    storage.lock()
    outbox = Outbox.open(
        storage.outbox_path, max_bytes=config.telemetry.outbox_max_bytes, clock=clock.time
    )
    service = InferenceService(drift=config.drift, wall_clock=clock.time)
    inbox = queue.Queue() if inbox is None else inbox
    broker = config.broker
    address = BrokerAddress(
        host=broker.host,
        port=broker.port,
        username=broker.username,
        password=broker.password,
        client_id=f"edgefleet-agent-{config.device.id}",
        keepalive=broker.keepalive,
        tls_ca=broker.tls_ca,
    )
    state_topic = device_topic(config.device.id, Channel.STATE)
    transport = MqttTransport(
        address,
        sink=inbox.put,
        will=lambda: (state_topic, offline_state(config, clock.time())),
        backoff=backoff,
        loop=loop,
    )
    facts = DeviceFacts(
        profile=config.device.profile,
        max_artifact_bytes=min(config.trust.max_artifact_bytes, profile.max_artifact_bytes),
        rules=config.update,
    )
    return Parts(
        config=config,
        transport=transport,
        inbox=inbox,
        storage=storage,
        outbox=outbox,
        service=service,
        load_runner=partial(ModelRunner.load, threads=profile.threads, xnnpack=profile.xnnpack),
        intake=Intake(storage, facts, config.trust.root_envelope()),
        clock=clock,
        monitor=SystemMonitor(),
        server=None if server is None else server(service),
    )


def offline_state(config: AgentConfig, now: float) -> bytes:
    """The retained state once this agent is gone: its last will, and its clean goodbye."""
    return encode(
        State(
            status=DeviceStatus.OFFLINE,
            sent_at=now,
            agent_version=__version__,
            profile=config.device.profile,
        )
    )
