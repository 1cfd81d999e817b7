"""One simulated device: the real agent, driven by a host process instead of its own threads.

The agent is built from the same parts ``edgefleet-agent`` builds
(:func:`edgefleet.agent.parts.build_parts`) on the device's own data
directory and broker account; only its network I/O runs on the host's
:class:`~edgefleet.server.sim.netloop.NetLoop` and its loop is stepped by
the host. Faults act where they would on a board: a power cut drops the
process's state and sockets without a goodbye and boots again from disk; a
corrupt chunk is a flipped byte on the wire; drift changes what the sensor
reads.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.agent.agent import Agent, Exit
from edgefleet.agent.errors import AgentError
from edgefleet.agent.parts import Parts, build_parts
from edgefleet.agent.telemetry import SystemMonitor, SystemStats
from edgefleet.agent.transport import Acked, MqttTransport, Received, TransportEvent
from edgefleet.server.sim.data import NO_DRIFT, DriftSetting, RowSource
from edgefleet.server.sim.netloop import NetLoop
from edgefleet.shared.agent_config import AgentConfig
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.messages import UpdatePhase
from edgefleet.shared.profiles import HardwareProfile
from edgefleet.shared.topics import all_artifacts_filter

log = logging.getLogger(__name__)

_ARTIFACTS = all_artifacts_filter().rstrip("#")


@dataclass
class DeviceCounters:
    inferences: int = 0
    inference_errors: int = 0
    updates_applied: int = 0
    """Versions committed after probation."""
    rolled_back: int = 0
    failed: int = 0
    power_cuts: int = 0
    restarts: int = 0
    corrupted_chunks: int = 0
    acked: int = 0
    """Publishes the broker acknowledged (outbox messages and retained states)."""


@dataclass
class CutTrap:
    """A power cut armed to strike when the update machine enters ``phase``."""

    phase: str
    deadline: float
    off_for: float


@dataclass
class Faults:
    corrupt_left: int = 0
    drift: DriftSetting = NO_DRIFT
    trap: CutTrap | None = None
    cut_due: bool = False
    seen_phases: set[str] = field(default_factory=set)


class HostVitals(SystemMonitor):
    """The host's CPU, memory and temperature, read at most once per ``period``.

    A host's agents share one process, so each would read the same ``/proc``
    files once per window: at thousands of agents that alone cost a tenth of
    the host's time. Each simulated device reports its host's vitals.
    """

    def __init__(self, period: float = 1.0) -> None:
        super().__init__()
        self._period = period
        self._last: tuple[float, SystemStats] | None = None

    def read(self) -> SystemStats:
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= self._period:
            self._last = (now, super().read())
        return self._last[1]


class _Inbox(queue.Queue[TransportEvent]):
    """The agent's inbox, which also lets the host know there is mail, and can garble chunks.

    ``put`` runs on the network thread (the transport's sink).
    """

    def __init__(self, device: SimDevice) -> None:
        super().__init__()
        self._device = device

    def put(self, item: TransportEvent, block: bool = True, timeout: float | None = None) -> None:
        super().put(self._device.arrived(item), block, timeout)
        self._device.mail(self._device)


class SimDevice:
    def __init__(
        self,
        config: AgentConfig,
        *,
        profile: HardwareProfile,
        group: str,
        net: NetLoop,
        rows: RowSource,
        mail: Callable[[SimDevice], None],
        offset: int,
        vitals: SystemMonitor,
    ) -> None:
        self.config = config
        self.device_id = config.device.id
        self.group = group
        self._profile = profile
        self._net = net
        self._rows = rows
        self.mail = mail
        self._offset = offset
        self._vitals = vitals
        self.counters = DeviceCounters()
        self.faults = Faults()
        self.agent: Agent | None = None
        self._parts: Parts | None = None
        self.disk_full = False

    @property
    def powered(self) -> bool:
        return self.agent is not None

    @property
    def transport(self) -> MqttTransport | None:
        parts = self._parts
        if parts is None or not isinstance(parts.transport, MqttTransport):
            return None
        return parts.transport

    # -- power ------------------------------------------------------------------------------

    def boot(self) -> None:
        """Power on: open the data directory and start the agent, as ``edgefleet-agent`` does."""
        built = build_parts(self.config, profile=self._profile, loop=self._net, inbox=_Inbox(self))
        parts = dataclasses.replace(built, monitor=self._vitals)
        self._parts = parts
        self.agent = Agent(parts, on_phase=self._phase)
        self.agent.start()

    def power_cut(self) -> None:
        """Everything in memory is gone; the broker sees the socket die and sends the will."""
        agent, parts = self.agent, self._parts
        if agent is None or parts is None:
            return
        self.agent, self._parts = None, None
        self.counters.power_cuts += 1
        self.faults.trap = None
        self.faults.cut_due = False
        if isinstance(parts.transport, MqttTransport):  # what build_parts makes
            self._net.kill(parts.transport)
        parts.service.close()
        parts.outbox.close()
        parts.storage.unlock()

    def shutdown(self) -> None:
        """A clean stop: last window, outbox flushed while the broker answers, ``offline``."""
        agent, self.agent, self._parts = self.agent, None, None
        if agent is not None:
            agent.shutdown()

    # -- the loop ---------------------------------------------------------------------------

    def step(self) -> None:
        agent = self.agent
        if agent is None:
            return
        agent.step(0.0)
        if agent.pending_exit is Exit.RESTART:
            self.counters.restarts += 1
            self.shutdown()
            self.boot()

    def infer(self) -> None:
        """One inference on the next row of what this device's sensor reads now."""
        parts = self._parts
        if parts is None:
            return
        active = parts.service.active
        if active is None:
            return
        shape = active.runner.manifest.inputs[0].shape
        pool = self._rows.pool(tuple(shape), self.faults.drift)
        if pool is None:
            self.counters.inference_errors += 1
            return
        row = pool[self._offset % len(pool)]
        self._offset += 1
        try:
            parts.service.predict(row)
        except (AgentError, EdgefleetError):
            self.counters.inference_errors += 1
        else:
            self.counters.inferences += 1

    def arrived(self, event: TransportEvent) -> TransportEvent:
        """Network thread: a corrupt-chunk fault flips one byte of the next artifact chunks."""
        if isinstance(event, Received) and event.topic.startswith(_ARTIFACTS):
            if self.faults.corrupt_left > 0 and event.payload:
                self.faults.corrupt_left -= 1
                self.counters.corrupted_chunks += 1
                garbled = bytearray(event.payload)
                garbled[len(garbled) // 2] ^= 0xFF
                return Received(event.topic, bytes(garbled), event.retained)
        elif isinstance(event, Acked) and event.ok:
            self.counters.acked += 1
        return event

    def _phase(self, phase: UpdatePhase) -> None:
        self.faults.seen_phases.add(phase.value)
        if phase is UpdatePhase.COMMITTED:
            self.counters.updates_applied += 1
        elif phase is UpdatePhase.ROLLED_BACK:
            self.counters.rolled_back += 1
        elif phase is UpdatePhase.FAILED:
            self.counters.failed += 1
        trap = self.faults.trap
        if trap is not None and phase.value == trap.phase:
            self.faults.cut_due = True  # not here, inside the agent's step: after it

    # -- what the host reports -------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        parts, agent = self._parts, self.agent
        row: dict[str, Any] = {
            "id": self.device_id,
            "group": self.group,
            "powered": agent is not None,
            "connected": agent is not None and agent.connected,
            "phase": None,
            "version": None,
            "pending": None,
            "dropped": None,
            **vars(self.counters),
        }
        if agent is not None and parts is not None:
            row["phase"] = agent.updater.state.phase.value
            active = parts.service.active
            row["version"] = None if active is None else active.runner.manifest.version
            stats = parts.outbox.stats()
            row["pending"], row["dropped"] = stats.pending, stats.dropped
        return row
