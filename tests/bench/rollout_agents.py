"""Simulated agents for the rollout benchmark: many real paho connections in one child process.

Each simulated agent is its own MQTT v5 connection with its own device
credentials. The parent (:mod:`tests.bench.bench_rollout`) drives the agents
of a process through a pipe, one phase at a time::

    parent                                child
    ("subscribe", kind, arg)       ->     every agent subscribes, waits for its SUBACK
                                   <-     ("subscribed",)
    ("expect", Expectation)        ->     armed
                                   <-     ("armed",)
    ... the parent publishes ...
                                   <-     ("done", last_finish, incomplete, errors, cpu)

``last_finish`` is ``time.monotonic()`` when the last agent of this process
finished (CLOCK_MONOTONIC is one clock for every process of the machine), so
the parent takes the maximum over its children; ``cpu`` is the process's user +
system seconds from arming to done (network, reassembly, hashing).

Two ways to drive the connections (``LoopMode``): ``select``, one thread
running every socket of the process through a selector with paho's external
loop calls, or ``threads``, paho's ``loop_start`` thread per connection.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.agent.update.chunks import ChunkAssembler
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.topics import (
    ArtifactTopic,
    Channel,
    artifact_filter,
    device_topic,
    parse_topic,
)

KEEPALIVE = 120
CONNECT_TIMEOUT = 120.0


class LoopMode(StrEnum):
    SELECT = "select"
    THREADS = "threads"


class Subscription(StrEnum):
    ARTIFACT = "artifact"
    """Every agent: every chunk of one artifact (``arg``: the sha256)."""
    DESIRED = "desired"
    """Each agent: its own ``desired`` only."""


@dataclass(frozen=True, slots=True)
class AgentsSpec:
    host: str
    port: int
    accounts: tuple[tuple[str, str], ...]
    """``(device id, password)``; the device id is the username."""
    loop: LoopMode


@dataclass(frozen=True, slots=True)
class Expectation:
    """What every agent must hold before its process reports done (exactly one field set)."""

    stream_bytes: int | None = None
    """Count payload bytes only (the bare fan-out stream on ``stream_sha256``'s chunk topics)."""
    stream_sha256: str | None = None
    artifact: Manifest | None = None
    """Reassemble with the agent's ChunkAssembler and check the sha256."""
    desired_sha256: dict[str, str] | None = None
    """Per device: the sha256 of the ``desired`` payload it must receive."""
    timeout: float = 120.0


@dataclass
class _Agent:
    device_id: str
    client: mqtt.Client
    received: int = 0
    assembler: ChunkAssembler | None = None
    done: bool = False
    subacks: list[ReasonCode] = field(default_factory=list)


class Agents:
    """The connections of one process and what the current phase asks of them."""

    def __init__(self, spec: AgentsSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._selector = selectors.DefaultSelector() if spec.loop is LoopMode.SELECT else None
        self._expect: Expectation | None = None
        self._remaining = 0
        self._last_finish = 0.0
        self._errors: list[str] = []
        self._connected = 0
        self._unsubscribed = 0
        self.agents = [self._client(device_id, password) for device_id, password in spec.accounts]

    # -- connections ---------------------------------------------------------------------------

    def _client(self, device_id: str, password: str) -> _Agent:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=device_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(device_id, password)
        agent = _Agent(device_id, client)
        client.user_data_set(agent)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect = self._on_connect
        client.on_unsubscribe = self._on_unsubscribe
        if self._selector is not None:
            client.on_socket_open = self._on_socket_open
            client.on_socket_close = self._on_socket_close
            client.on_socket_register_write = self._register_write
            client.on_socket_unregister_write = self._unregister_write
        return agent

    def connect(self) -> float:
        """Connect every agent; the seconds it took until the last CONNACK."""
        started = time.monotonic()
        for agent in self.agents:
            agent.client.connect(self.spec.host, self.spec.port, keepalive=KEEPALIVE)
            if self._selector is None:
                agent.client.loop_start()
        self._run_until(lambda: self._connected == len(self.agents), CONNECT_TIMEOUT, "CONNACKs")
        return time.monotonic() - started

    def subscribe(self, kind: Subscription, arg: str | None) -> None:
        with self._lock:
            for agent in self.agents:
                agent.subacks = []
        for agent in self.agents:
            topic = (
                artifact_filter(str(arg))
                if kind is Subscription.ARTIFACT
                else device_topic(agent.device_id, Channel.DESIRED)
            )
            agent.client.subscribe(topic, qos=1)
        self._run_until(lambda: all(a.subacks for a in self.agents), 60.0, "SUBACKs")
        refused = [a.device_id for a in self.agents if any(r.is_failure for r in a.subacks)]
        if refused:
            raise RuntimeError(f"subscriptions refused for {refused[:5]}")

    def unsubscribe_artifact(self, sha256: str) -> None:
        with self._lock:
            self._unsubscribed = 0
        for agent in self.agents:
            agent.client.unsubscribe(artifact_filter(sha256))
        self._run_until(lambda: self._unsubscribed == len(self.agents), 60.0, "UNSUBACKs")

    def close(self) -> None:
        for agent in self.agents:
            agent.client.disconnect()
        self._run_until(lambda: False, 0.5, "")  # select mode: lets the DISCONNECTs out
        if self._selector is None:
            for agent in self.agents:
                agent.client.loop_stop()

    # -- phases --------------------------------------------------------------------------------

    def arm(self, expect: Expectation) -> None:
        with self._lock:
            self._expect = expect
            self._remaining = len(self.agents)
            self._last_finish = 0.0
            self._errors = []
            for agent in self.agents:
                agent.received = 0
                agent.done = False
                agent.assembler = (
                    ChunkAssembler(expect.artifact) if expect.artifact is not None else None
                )

    def wait_done(self, timeout: float) -> tuple[float, int, list[str], float]:
        """``(last finish, agents not done, errors, CPU seconds)`` once done or past ``timeout``."""
        before = _cpu()
        self._run_until(lambda: self._remaining == 0, timeout, "")
        with self._lock:
            return self._last_finish, self._remaining, self._errors[:5], _cpu() - before

    def _on_message(self, _c: mqtt.Client, agent: _Agent, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        with self._lock:
            expect = self._expect
            if expect is None or agent.done:
                return
            try:
                finished = self._take(agent, expect, message.topic, payload)
            except Exception as err:  # noqa: BLE001  # reported to the parent, not lost
                self._errors.append(f"{agent.device_id}: {err!r}")
                return
            if finished:
                agent.done = True
                self._remaining -= 1
                self._last_finish = time.monotonic()
                self._changed.notify_all()

    @staticmethod
    def _take(agent: _Agent, expect: Expectation, topic: str, payload: bytes) -> bool:
        """Whether ``agent`` now holds all it expects; messages of earlier phases are ignored."""
        if expect.stream_sha256 is not None and expect.stream_bytes is not None:
            if topic.startswith(artifact_filter(expect.stream_sha256)[:-1]):
                agent.received += len(payload)
            return agent.received >= expect.stream_bytes
        if agent.assembler is not None:
            address = parse_topic(topic)
            if not isinstance(address, ArtifactTopic):
                raise TypeError(f"not a chunk: {topic}")
            if address.sha256 != agent.assembler.spec.sha256:
                return False
            agent.assembler.accept(address.chunk, payload)
            if not agent.assembler.complete:
                return False
            agent.assembler.finish()  # the sha256 check: raises on a mismatch
            return True
        assert expect.desired_sha256 is not None
        return hashlib.sha256(payload).hexdigest() == expect.desired_sha256[agent.device_id]

    def _on_subscribe(
        self, _c: mqtt.Client, agent: _Agent, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        with self._lock:
            agent.subacks = list(reasons)
            self._changed.notify_all()

    def _on_unsubscribe(
        self, _c: mqtt.Client, _agent: _Agent, _mid: int, _reasons: list[ReasonCode], _p: Any
    ) -> None:
        with self._lock:
            self._unsubscribed += 1
            self._changed.notify_all()

    def _on_connect(
        self, _c: mqtt.Client, agent: _Agent, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        with self._lock:
            if reason.is_failure:
                self._errors.append(f"{agent.device_id}: connect refused: {reason}")
            else:
                self._connected += 1
            self._changed.notify_all()

    # -- the loop ------------------------------------------------------------------------------

    def _run_until(self, condition: Any, timeout: float, what: str) -> None:
        """Drive the network (select mode) or wait (threads mode) until ``condition()``."""
        deadline = time.monotonic() + timeout
        if self._selector is None:
            with self._changed:
                self._changed.wait_for(condition, timeout)
        else:
            next_misc = 0.0
            while not condition() and (left := deadline - time.monotonic()) > 0:
                for key, events in self._selector.select(min(left, 1.0)):
                    client: mqtt.Client = key.data
                    if events & selectors.EVENT_READ:
                        client.loop_read()
                    if events & selectors.EVENT_WRITE:
                        client.loop_write()
                if time.monotonic() >= next_misc:
                    for agent in self.agents:
                        agent.client.loop_misc()
                    next_misc = time.monotonic() + 1.0
        if what and not condition():
            raise RuntimeError(f"no {what} within {timeout} s: {self._errors[:3]}")

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _on_socket_close(self, _client: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._selector is not None
        self._selector.unregister(sock)

    def _register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._selector is not None
        self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _unregister_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._selector is not None
        self._selector.modify(sock, selectors.EVENT_READ, client)


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def main(conn: Connection, spec: AgentsSpec) -> None:
    """Child process entry: connect, then serve the parent's phases until ``stop``."""
    agents = Agents(spec)
    conn.send(("ready", agents.connect()))
    while True:
        command, *args = conn.recv()
        if command == "stop":
            agents.close()
            conn.send(("stopped",))
            return
        if command == "subscribe":
            agents.subscribe(Subscription(args[0]), args[1])
            conn.send(("subscribed",))
        elif command == "unsubscribe":
            agents.unsubscribe_artifact(args[0])
            conn.send(("unsubscribed",))
        elif command == "expect":
            expect: Expectation = args[0]
            agents.arm(expect)
            conn.send(("armed",))
            conn.send(("done", *agents.wait_done(expect.timeout)))
        else:
            raise ValueError(f"unknown command {command!r}")
