"""One thread's network I/O for many simulated agents' broker connections.

A real device runs one agent with one paho network thread. A simulator
process runs thousands of agents, and a thread per connection would spend
the machine on stacks and switches, so :class:`NetLoop` services every
socket from a single selector with paho's external-loop calls (see
:class:`edgefleet.agent.transport.ExternalLoop`). The agents themselves are
unchanged: their transports are the real :class:`MqttTransport`, which the
loop connects, reads, writes, pings and reconnects after the transport's
own backoff.

Paho calls ``on_socket_register_write`` from whichever thread publishes (the
simulator's agent thread), so that callback only records the wish and wakes
the selector; the selector itself is touched only by the loop's thread.
Faults (a dropped connection, a power cut, a slow link) are orders queued
to that thread too.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edgefleet.agent.transport import MqttTransport

log = logging.getLogger(__name__)

MISC_SECONDS = 1.0
"""How often every connection gets ``loop_misc`` (keepalive pings, ping timeouts)."""


@dataclass(eq=False)
class _Link:
    transport: MqttTransport
    sock: socket.socket | None = None
    latency: float = 0.0
    """Seconds every exchange waits on a slow link; 0 for a normal one."""
    paused: bool = False
    detached: bool = False


class NetLoop:
    """Thread-safe to call; everything it does happens on the thread in :meth:`run`."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._orders: list[Callable[[], None]] = []
        self._want_write: set[_Link] = set()
        self._woken = False
        self._links: dict[MqttTransport, _Link] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._next_misc = 0.0
        self.connects = 0
        self.drops = 0

    # -- from any thread ------------------------------------------------------------------

    def attach(self, transport: MqttTransport) -> None:
        self._post(lambda: self._attach(transport))

    def detach(self, transport: MqttTransport) -> None:
        self._post(lambda: self._detach(transport))

    def drop(self, transport: MqttTransport) -> None:
        """Cut the connection without a DISCONNECT; the agent reconnects by itself."""
        self._post(lambda: self._drop(transport))

    def kill(self, transport: MqttTransport) -> None:
        """Power cut: close the socket without a DISCONNECT and never reconnect."""
        self._post(lambda: self._kill(transport))

    def slow(self, transport: MqttTransport, latency: float) -> None:
        """Every read and write on this link waits ``latency`` seconds (0: normal again)."""
        self._post(lambda: self._slow(transport, latency))

    def connected_count(self) -> int:
        return sum(1 for link in list(self._links.values()) if link.transport.connected)

    # -- the loop's thread ----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once(0.2)
        self._selector.close()

    def run_once(self, timeout: float) -> None:
        self._run_orders()
        now = time.monotonic()
        self._run_timers(now)
        if self._timers:
            timeout = max(0.0, min(timeout, self._timers[0][0] - now))
        for key, mask in self._selector.select(timeout):
            if key.data is None:
                self._drain_wake()
                continue
            link: _Link = key.data
            if link.latency > 0:
                self._pause(link)
                continue
            if mask & selectors.EVENT_READ:
                link.transport.client.loop_read()
            if mask & selectors.EVENT_WRITE and link.sock is not None:
                link.transport.client.loop_write()
        self._run_orders()
        self._write_wanted()
        if time.monotonic() >= self._next_misc:
            self._next_misc = time.monotonic() + MISC_SECONDS
            for link in list(self._links.values()):
                if link.sock is not None and not link.paused:
                    link.transport.client.loop_misc()

    def _post(self, order: Callable[[], None]) -> None:
        with self._lock:
            self._orders.append(order)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        try:
            self._wake_w.send(b"x")
        except BlockingIOError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._woken = False

    def _run_orders(self) -> None:
        with self._lock:
            orders, self._orders = self._orders, []
        for order in orders:
            order()

    def _later(self, delay: float, what: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), what))

    def _run_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _due, _n, what = heapq.heappop(self._timers)
            what()

    # -- connections ------------------------------------------------------------------------

    def _attach(self, transport: MqttTransport) -> None:
        link = _Link(transport)
        self._links[transport] = link
        client = transport.client
        client.on_socket_open = lambda _c, _u, sock: self._opened(link, sock)
        client.on_socket_close = lambda _c, _u, _sock: self._closed(link)
        client.on_socket_register_write = lambda _c, _u, _sock: self._wants_write(link)
        client.on_socket_unregister_write = lambda _c, _u, _sock: None
        self._connect(link)

    def _connect(self, link: _Link) -> None:
        if link.detached or link.transport.stopping:
            return
        if not link.transport.connect_once():
            self._later(link.transport.retry_delay(), lambda: self._connect(link))

    def _opened(self, link: _Link, sock: mqtt.SocketLike) -> None:
        if not isinstance(sock, socket.socket):  # paho opens TCP (or TLS) sockets only
            raise TypeError(f"unexpected socket {sock!r}")
        link.sock = sock
        self.connects += 1
        self._selector.register(sock, selectors.EVENT_READ, link)

    def _closed(self, link: _Link) -> None:
        """Paho closed the socket: after a clean stop, a kill, or a lost connection."""
        self._forget_socket(link)
        if link.detached or link.transport.stopping:
            return
        self.drops += 1
        self._later(link.transport.retry_delay(), lambda: self._connect(link))

    def _forget_socket(self, link: _Link) -> None:
        if link.sock is not None and not link.paused:
            try:
                self._selector.unregister(link.sock)
            except (KeyError, ValueError):
                pass
        link.sock = None
        link.paused = False
        self._want_write.discard(link)

    def _wants_write(self, link: _Link) -> None:
        with self._lock:
            self._want_write.add(link)
        self._wake()

    def _write_wanted(self) -> None:
        with self._lock:
            wanted, self._want_write = self._want_write, set()
        for link in wanted:
            if link.sock is None or link.paused:
                continue
            client = link.transport.client
            client.loop_write()
            if link.sock is not None and not link.paused:
                events = selectors.EVENT_READ
                if client.want_write():  # the socket's buffer is full: wait until it drains
                    events |= selectors.EVENT_WRITE
                self._selector.modify(link.sock, events, link)

    def _detach(self, transport: MqttTransport) -> None:
        link = self._links.pop(transport, None)
        if link is None:
            return
        link.detached = True
        if link.sock is not None and not link.paused:
            transport.client.loop_write()  # the DISCONNECT paho queued; it closes the socket
        if link.sock is not None:
            self._hard_close(link)

    def _drop(self, transport: MqttTransport) -> None:
        link = self._links.get(transport)
        if link is not None and link.sock is not None:
            try:
                link.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone

    def _kill(self, transport: MqttTransport) -> None:
        link = self._links.pop(transport, None)
        if link is None:
            return
        link.detached = True
        if link.sock is not None:
            self._hard_close(link)

    def _hard_close(self, link: _Link) -> None:
        sock = link.sock
        self._forget_socket(link)
        if sock is not None:
            sock.close()

    def _slow(self, transport: MqttTransport, latency: float) -> None:
        link = self._links.get(transport)
        if link is None:
            return
        link.latency = latency
        if latency <= 0 and link.paused:
            self._resume(link)

    def _pause(self, link: _Link) -> None:
        """A slow link is serviced once per ``latency``: out of the selector until then."""
        if link.sock is None or link.paused:
            return
        self._selector.unregister(link.sock)
        link.paused = True
        self._later(link.latency, lambda: self._resume(link))

    def _resume(self, link: _Link) -> None:
        if not link.paused or link.sock is None:
            return
        link.paused = False
        self._selector.register(link.sock, selectors.EVENT_READ, link)
        client = link.transport.client
        client.loop_read()
        if link.sock is not None:
            client.loop_write()
