"""The composition root and main loop of the device agent.

:meth:`Agent.from_config` builds every part from one :class:`AgentConfig`;
:class:`Agent` itself takes them ready-made (transport, storage, outbox,
inference service, model loader, clock), so tests can swap any of them.

One thread, the caller's, does all the work: the transport's network thread
and the local API's threads only enqueue or serve inferences. Each pass of
:meth:`Agent.step` handles what arrived (``desired``, ``cmd``, artifact
chunks, PUBACKs), lets the updater act on time (download deadline, shadow,
probation), closes telemetry and drift windows when due, and hands the
outbox to the broker. :meth:`Agent.run` loops until asked to stop, then
shuts down cleanly: the API stops taking calls, the last window goes into
the outbox, the outbox is flushed while the broker answers, and the retained
state says ``offline``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from enum import StrEnum
from functools import partial

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.commands import Accepted, CommandDesk, Ignored, Order, Rejected
from edgefleet.agent.delivery import Delivery
from edgefleet.agent.errors import AgentError
from edgefleet.agent.inference import InferenceService
from edgefleet.agent.parts import Clock, Parts, Server, build_parts, offline_state
from edgefleet.agent.transport import Acked, Connected, Disconnected, Received, TransportEvent
from edgefleet.agent.update.state import UNNUMBERED
from edgefleet.agent.update.updater import PhaseHook, Updater
from edgefleet.shared import __version__
from edgefleet.shared.agent_config import AgentConfig
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.messages import (
    Desired,
    DeviceStatus,
    Event,
    EventKind,
    State,
    decode_as,
    encode,
)
from edgefleet.shared.profiles import HardwareProfile
from edgefleet.shared.topics import ArtifactTopic, Channel, DeviceTopic, device_topic, parse_topic

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2
"""Longest wait for a message before the loop looks at the clock again."""
FLUSH_SECONDS = 5.0
"""How long a clean shutdown waits for the broker to take the outbox and the offline state."""


class Exit(StrEnum):
    STOPPED = "stopped"
    RESTART = "restart"
    """A ``restart_agent`` command, or a rolled-back model that only a restart unloads."""


class Agent:
    def __init__(self, parts: Parts, *, on_phase: PhaseHook | None = None) -> None:
        self._parts = parts
        config = parts.config
        self._device_id = config.device.id
        self._profile = config.device.profile
        self._window = config.telemetry.window_seconds
        self._clock = parts.clock
        self._delivery = Delivery(parts.outbox, parts.transport, self._device_id)
        self._commands = CommandDesk()
        self.updater = Updater(
            storage=parts.storage,
            serving=parts.service,
            load_runner=parts.load_runner,
            subscriptions=parts.transport,
            emit=self._delivery.put_event,
            intake=parts.intake,
            clock=parts.clock.time,
            monotonic=parts.clock.monotonic,
            on_phase=on_phase,
        )
        self._next_window = parts.clock.monotonic() + self._window
        self._state_dirty = True
        self._published_update = self.updater.state
        self._exit: Exit | None = None
        self.rejected = 0
        """Messages from the broker that could not be used (malformed ``desired`` or ``cmd``)."""

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        *,
        profile: HardwareProfile,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        on_phase: PhaseHook | None = None,
        server: Callable[[InferenceService], Server] | None = None,
    ) -> Agent:
        """Every part from the config: data directory (locked), outbox, runtime, broker."""
        parts = build_parts(config, profile=profile, clock=clock, backoff=backoff, server=server)
        return cls(parts, on_phase=on_phase)

    @property
    def connected(self) -> bool:
        return self._parts.transport.connected

    @property
    def pending_exit(self) -> Exit | None:
        """Why :meth:`run` is about to return, for a caller that drives :meth:`step` itself."""
        return self._exit

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Boot the updater (crash recovery, serve a fit slot), then open the API and connect."""
        parts = self._parts
        self.updater.boot()
        if parts.server is not None:
            parts.server.start()
        parts.transport.subscribe(device_topic(self._device_id, Channel.DESIRED))
        parts.transport.subscribe(device_topic(self._device_id, Channel.CMD))
        parts.transport.start()
        log.info("agent %s started (profile %s)", self._device_id, self._profile)

    def run(self, stop: threading.Event) -> Exit:
        """Start, loop until ``stop`` is set (or a restart is due), then shut down cleanly."""
        self.start()
        try:
            while not stop.is_set() and self._exit is None:
                self.step(TICK_SECONDS)
        finally:
            self.shutdown()
        return self._exit or Exit.STOPPED

    def step(self, timeout: float = 0.0) -> None:
        """One pass: wait up to ``timeout`` for a message, then do everything that is due."""
        for event in self._arrivals(timeout):
            self._handle(event)
        self._guard("update", self.updater.tick)
        if self.updater.needs_restart:
            self._exit = Exit.RESTART
        if self._clock.monotonic() >= self._next_window:
            self._next_window += self._window
            self._guard("report", self._close_windows)
        if self.updater.state != self._published_update:
            self._state_dirty = True
        if self._state_dirty and self._parts.transport.connected:
            self._publish_state()
        self._guard("deliver", self._delivery.send)

    def shutdown(self) -> None:
        """Stop taking calls, report the last window, flush the outbox, say ``offline``."""
        parts = self._parts
        if parts.server is not None:
            parts.server.stop()
        self._guard("report", self._close_windows)
        deadline = self._clock.monotonic() + FLUSH_SECONDS
        goodbye: int | None = None
        while parts.transport.connected and self._clock.monotonic() < deadline:
            if goodbye is None and not self._delivery.in_flight and not parts.outbox.pending(1):
                goodbye = self._publish(
                    Channel.STATE, offline_state(parts.config, self._clock.time())
                )
            self._guard("deliver", self._delivery.send)
            acks = [e for e in self._arrivals(0.05) if isinstance(e, Acked)]
            if goodbye is not None and any(a.mid == goodbye for a in acks):
                break
        parts.transport.stop(FLUSH_SECONDS)
        parts.service.close()
        parts.outbox.close()
        parts.storage.unlock()
        log.info("agent %s stopped", self._device_id)

    def _arrivals(self, timeout: float) -> list[TransportEvent]:
        """What the transport handed over, waiting up to ``timeout`` for the first; PUBACKs
        are applied to the outbox here, the rest returned in order."""
        arrived: list[TransportEvent] = []
        try:
            arrived.append(self._parts.inbox.get(timeout=timeout))
            while True:
                arrived.append(self._parts.inbox.get_nowait())
        except queue.Empty:
            pass
        acks = [(e.mid, e.ok, e.reason) for e in arrived if isinstance(e, Acked)]
        if acks:
            self._guard("acknowledge", partial(self._delivery.acked, acks))
        return arrived

    # -- inbound --------------------------------------------------------------------------

    def _handle(self, event: TransportEvent) -> None:
        if isinstance(event, Connected):
            self._state_dirty = True
        elif isinstance(event, Disconnected):
            log.info("broker connection lost (%s); the outbox keeps what is produced", event.reason)
        elif isinstance(event, Received):
            try:
                self._received(event)
            except Exception:
                # A retained message that crashed the agent would crash it again at every start.
                self.rejected += 1
                log.exception("message on %s could not be handled", event.topic[:200])

    def _received(self, message: Received) -> None:
        try:
            address = parse_topic(message.topic)
        except EdgefleetError:
            log.warning("ignoring a message on %r", message.topic[:200])
            return
        if isinstance(address, ArtifactTopic):
            self.updater.on_chunk(address.sha256, address.chunk, message.payload)
        elif isinstance(address, DeviceTopic) and address.channel is Channel.DESIRED:
            self._desired(message.payload)
        elif isinstance(address, DeviceTopic) and address.channel is Channel.CMD:
            self._command(message.payload)
        self._state_dirty = True

    def _desired(self, payload: bytes) -> None:
        if not payload:
            return  # the retained desired was cleared
        try:
            desired = decode_as(Desired, payload)
        except EdgefleetError as err:
            self.rejected += 1
            log.error("unusable desired (%d so far): %s", self.rejected, err)  # noqa: TRY400
            return
        self.updater.on_desired(desired)

    def _command(self, payload: bytes) -> None:
        result = self._commands.interpret(payload, now=self._clock.time())
        if isinstance(result, Ignored):
            log.info("command ignored: %s", result.why)
        elif isinstance(result, Rejected):
            self.rejected += 1
            log.warning("command rejected (%d so far): %s", self.rejected, result.reason)
            self._report_rejection(result)
        elif isinstance(result, Accepted):
            log.info("command %s: %s", result.command_id, result.order.value)
            self._obey(result.order)

    def _obey(self, order: Order) -> None:
        if order is Order.PING:
            self._state_dirty = True
        elif order is Order.SAMPLE:
            self._close_drift()
        elif order is Order.RESTART:
            self._exit = Exit.RESTART

    def _report_rejection(self, rejected: Rejected) -> None:
        """An event names a model: a rejected command is reported against the one serving."""
        active = self._parts.service.active
        if active is None:
            return
        manifest = active.runner.manifest
        prefix = f"cmd {rejected.command_id}: " if rejected.command_id else "cmd: "
        self._delivery.put_event(
            Event(
                seq=UNNUMBERED,
                at=self._clock.time(),
                kind=EventKind.FAILED,
                model=manifest.model,
                version=manifest.version,
                reason=(prefix + rejected.reason)[:500],
            )
        )

    # -- outbound -----------------------------------------------------------------------------

    def _close_windows(self) -> None:
        parts = self._parts
        now = self._clock.time()
        system = None if parts.monitor is None else parts.monitor.read()
        windows = parts.service.close_telemetry(
            now=now, system=system, next_seq=partial(parts.outbox.next_seq, Channel.TELEMETRY.value)
        )
        self._delivery.put_telemetry(windows, sent_at=now)
        self._close_drift()

    def _close_drift(self) -> None:
        parts = self._parts
        drifts = parts.service.close_drift(
            now=self._clock.time(), next_seq=partial(parts.outbox.next_seq, Channel.DRIFT.value)
        )
        self._delivery.put_drift(drifts)

    def _publish_state(self) -> None:
        state = State(
            status=DeviceStatus.ONLINE,
            sent_at=self._clock.time(),
            agent_version=__version__,
            profile=self._profile,
            models=self.updater.models(),
            update=self.updater.progress(),
        )
        self._publish(Channel.STATE, encode(state))
        self._state_dirty = False
        self._published_update = self.updater.state

    def _publish(self, channel: Channel, payload: bytes) -> int | None:
        """Publish retained (only ``state`` goes out directly; the rest through the outbox)."""
        topic = device_topic(self._device_id, channel)
        try:
            return self._parts.transport.publish(topic, payload, retain=True)
        except AgentError as err:
            log.error("publish to %s failed: %s", topic, err)  # noqa: TRY400
            return None

    def _guard(self, what: str, work: Callable[[], object]) -> None:
        """Run ``work``; an error is logged and the loop goes on (nothing here may stop it)."""
        try:
            work()
        except (AgentError, EdgefleetError) as err:
            log.error("%s failed: %s", what, err)  # noqa: TRY400
