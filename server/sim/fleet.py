"""The simulated fleet from the parent's side: host processes, orders, reports.

Devices are dealt round-robin over ``processes`` spawned hosts (spawned,
not forked: the parent may hold TensorFlow, a server or paho threads,
none of which a child should inherit). One host per core is the sweet
spot on a small machine; the broker and the server need their share too.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from edgefleet.server.errors import ServerError
from edgefleet.server.sim.host import host_main
from edgefleet.server.sim.orders import HostDevice, HostSpec, Order, Report, Stop

READY_SECONDS_PER_DEVICE = 0.05
REPLY_SECONDS = 120.0


class SimulatorError(ServerError):
    pass


class HostedFleet:
    def __init__(self, devices: Sequence[HostDevice], spec: HostSpec, *, processes: int) -> None:
        if processes < 1:
            raise SimulatorError("want at least one simulator process")
        shares = [tuple(devices[i::processes]) for i in range(processes)]
        self._specs = [replace(spec, devices=share) for share in shares if share]
        self._conns: list[Connection] = []
        self._processes: list[BaseProcess] = []

    def start(self) -> None:
        """Spawn the hosts and wait until every agent has booted (not yet connected)."""
        context = multiprocessing.get_context("spawn")
        for index, spec in enumerate(self._specs):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=host_main, args=(theirs, spec), name=f"edgefleet-sim-{index}", daemon=True
            )
            process.start()
            theirs.close()
            self._conns.append(mine)
            self._processes.append(process)
        for conn, spec in zip(self._conns, self._specs, strict=True):
            reply = self._receive(conn, 30 + READY_SECONDS_PER_DEVICE * len(spec.devices))
            if reply != ("ready", len(spec.devices)):
                raise SimulatorError(f"a simulator host did not start: {reply!r}")

    def order(self, order: Order) -> None:
        for conn in self._conns:
            conn.send(order)
        for conn in self._conns:
            self._receive(conn, REPLY_SECONDS)

    def report(self) -> list[dict[str, Any]]:
        """Every host's report (device rows and the host's own figures)."""
        for conn in self._conns:
            conn.send(Report())
        return [self._receive(conn, REPLY_SECONDS) for conn in self._conns]

    def stop(self) -> list[dict[str, Any]]:
        """Stop every agent cleanly (each flushes its outbox and says ``offline``); the last
        reports."""
        reports = []
        for conn in self._conns:
            conn.send(Stop())
        for conn, spec in zip(self._conns, self._specs, strict=True):
            reports.append(self._receive(conn, 30 + READY_SECONDS_PER_DEVICE * len(spec.devices)))
        for process in self._processes:
            process.join(30)
        self._conns, self._processes = [], []
        return reports

    def kill(self) -> None:
        """After a failure: end the hosts without waiting for them."""
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(10)
        self._conns, self._processes = [], []

    def _receive(self, conn: Connection, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not conn.poll(0.5):
            if not all(p.is_alive() for p in self._processes):
                raise SimulatorError("a simulator host died (its log is above)")
            if time.monotonic() > deadline:
                raise SimulatorError(f"a simulator host did not answer within {timeout:.0f} s")
        return conn.recv()
