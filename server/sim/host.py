"""A simulator host process: a share of the fleet's agents, their sockets and their faults.

Two threads. The network thread runs the :class:`NetLoop` over every
agent's broker connection. The main thread steps the agents: at once when
a message arrived for one (its inbox tells the host), otherwise every
``step_seconds``; it runs each device's inferences at the fleet's rate,
applies the parent's fault orders, and keeps the timers that end faults
and power devices back on. Nothing here imports TensorFlow: the host loads
only the device runtime, like a board.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from edgefleet.agent.transport import MqttTransport
from edgefleet.server.sim.data import NO_DRIFT, RowSource
from edgefleet.server.sim.device import CutTrap, HostVitals, SimDevice
from edgefleet.server.sim.netloop import NetLoop
from edgefleet.server.sim.orders import (
    Corrupt,
    Cut,
    DriftOn,
    Drop,
    FillDisk,
    HostSpec,
    Order,
    Report,
    Slow,
    Stop,
)
from edgefleet.shared.profiles import parse_profile

log = logging.getLogger(__name__)

IDLE_WAIT = 0.05
FILLER = "edgefleet-sim-filler"


def host_main(conn: Connection, spec: HostSpec) -> None:
    """Process entry point (spawned): run the devices until the parent says stop."""
    logging.basicConfig(level=spec.log_level, format="%(asctime)s host %(levelname)s %(message)s")
    _raise_fd_limit()
    Host(spec).run(conn)


def _raise_fd_limit() -> None:
    """Each agent holds a socket, a lock file and its outbox's files: thousands of them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Host:
    def __init__(self, spec: HostSpec) -> None:
        self._spec = spec
        self._net = NetLoop()
        self._mailbag: deque[SimDevice] = deque()
        self._wake = threading.Event()
        rows = RowSource(spec.data, seed=spec.seed)
        profile = parse_profile(spec.profile_toml)
        vitals = HostVitals()
        self.devices = [
            SimDevice(
                d.config,
                profile=profile,
                group=d.group,
                net=self._net,
                rows=rows,
                mail=self._mail,
                offset=d.offset,
                vitals=vitals,
            )
            for d in spec.devices
        ]
        self._by_id = {d.device_id: d for d in self.devices}
        self._disks = {d.config.device.id: d.disk for d in spec.devices if d.disk}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lags: deque[float] = deque(maxlen=10_000)

    def _mail(self, device: SimDevice) -> None:
        self._mailbag.append(device)
        self._wake.set()

    # -- the main loop ---------------------------------------------------------------------

    def run(self, conn: Connection) -> None:
        stop = threading.Event()
        network = threading.Thread(target=self._net.run, args=(stop,), name="sim-net", daemon=True)
        network.start()
        for device in self.devices:
            device.boot()
        conn.send(("ready", len(self.devices)))
        spec = self._spec
        count = max(1, len(self.devices))
        start = time.monotonic()
        for index, device in enumerate(self.devices):
            # Spread the fleet over the period, as devices booted at different times would be.
            self._at(start + spec.step_seconds * index / count, self._stepper(device))
            if spec.inference_hz > 0:
                self._at(start + index / count / spec.inference_hz, self._inferrer(device))
        try:
            while True:
                if conn.poll() and not self._answer(conn, conn.recv()):
                    break
                self._deliver_mail()
                next_due = self._run_timers()
                self._wake.wait(max(0.0, min(IDLE_WAIT, next_due - time.monotonic())))
                self._wake.clear()
        finally:
            for device in self.devices:
                device.shutdown()
            stop.set()
            network.join(10)
        conn.send(self._report())

    def _answer(self, conn: Connection, order: Order) -> bool:
        if isinstance(order, Stop):
            return False
        if isinstance(order, Report):
            conn.send(self._report())
        else:
            self._apply(order)
            conn.send(("ok",))
        return True

    def _deliver_mail(self) -> None:
        while self._mailbag:
            device = self._mailbag.popleft()
            device.step()
            self._cut_if_due(device)

    def _at(self, when: float, what: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._order), what))

    def _run_timers(self) -> float:
        """Run what was due when the pass began; when the next thing is due.

        Only what was due at the start: a host that has fallen behind would
        otherwise keep finding work rescheduled while it ran and never get back
        to its parent's orders.
        """
        start = time.monotonic()
        while self._timers and self._timers[0][0] <= start:
            due, _n, what = heapq.heappop(self._timers)
            self._lags.append(time.monotonic() - due)
            what()
            if self._mailbag:
                self._deliver_mail()
        return self._timers[0][0] if self._timers else time.monotonic() + IDLE_WAIT

    def _stepper(self, device: SimDevice) -> Callable[[], None]:
        period = self._spec.step_seconds

        def step() -> None:
            device.step()
            self._cut_if_due(device)
            self._at(time.monotonic() + period, step)

        return step

    def _inferrer(self, device: SimDevice) -> Callable[[], None]:
        period = 1.0 / self._spec.inference_hz

        def infer() -> None:
            device.infer()
            self._at(time.monotonic() + period, infer)

        return infer

    # -- faults ------------------------------------------------------------------------------

    def _apply(self, order: Order) -> None:
        targets = [self._by_id[i] for i in getattr(order, "ids", ()) if i in self._by_id]
        now = time.monotonic()
        for device in targets:
            if isinstance(order, Drop):
                self._on_transport(device, self._net.drop)
            elif isinstance(order, Cut):
                self._cut(device, order, now)
            elif isinstance(order, Slow):
                self._slow(device, order.latency, order.duration)
            elif isinstance(order, Corrupt):
                device.faults.corrupt_left += order.chunks
            elif isinstance(order, DriftOn):
                device.faults.drift = order.setting
                if order.duration is not None:
                    self._at(now + order.duration, partial(_no_drift, device))
            elif isinstance(order, FillDisk):
                self._fill(device, order.duration)

    def _on_transport(self, device: SimDevice, act: Callable[[MqttTransport], None]) -> None:
        transport = device.transport
        if transport is not None:
            act(transport)

    def _cut(self, device: SimDevice, order: Cut, now: float) -> None:
        if order.phase is None:
            self._power_cycle(device, order.off_for)
            return
        trap = CutTrap(order.phase, now + order.within, order.off_for)
        device.faults.trap = trap
        self._at(trap.deadline, lambda: _disarm(device, trap))

    def _cut_if_due(self, device: SimDevice) -> None:
        trap = device.faults.trap
        if trap is not None and device.faults.cut_due:
            self._power_cycle(device, trap.off_for)

    def _power_cycle(self, device: SimDevice, off_for: float) -> None:
        if not device.powered:
            return
        device.power_cut()
        self._at(time.monotonic() + off_for, device.boot)

    def _slow(self, device: SimDevice, latency: float, duration: float) -> None:
        self._on_transport(device, lambda t: self._net.slow(t, latency))
        self._at(
            time.monotonic() + duration,
            lambda: self._on_transport(device, lambda t: self._net.slow(t, 0.0)),
        )

    def _fill(self, device: SimDevice, duration: float) -> None:
        disk = self._disks.get(device.device_id)
        if disk is None:
            log.error("fill_disk on %s: it has no disk of its own", device.device_id)
            return
        filler = Path(disk) / FILLER
        _fill_up(filler)
        device.disk_full = True

        def free() -> None:
            filler.unlink(missing_ok=True)
            device.disk_full = False

        self._at(time.monotonic() + duration, free)

    # -- reporting ---------------------------------------------------------------------------

    def _report(self) -> dict[str, Any]:
        lags = sorted(self._lags)
        return {
            "devices": [d.report() for d in self.devices],
            "connects": self._net.connects,
            "drops": self._net.drops,
            "step_lag_p95": lags[int(len(lags) * 0.95)] if lags else 0.0,
            "cpu_seconds": sum(os.times()[:2]),
        }


def _no_drift(device: SimDevice) -> None:
    device.faults.drift = NO_DRIFT


def _disarm(device: SimDevice, trap: CutTrap) -> None:
    """The trap's time is up without the phase showing (a later trap stays armed)."""
    if device.faults.trap is trap:
        device.faults.trap = None


def _fill_up(path: Path) -> None:
    """Write until the file system says it is full, as a runaway log on the board would."""
    with path.open("ab", buffering=0) as sink:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            try:
                while True:
                    sink.write(block)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
