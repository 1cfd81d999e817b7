"""The agent end to end: a real ``edgefleet-agent`` process, the real broker, a server-side view.

:class:`Server` publishes what the fleet's server would (retained chunks
and ``desired``) with the server's own credentials and records what the
device reports. :class:`AgentProcess` runs ``python -m edgefleet.agent.cli``
on a config written the way provisioning writes it, and talks to the local
inference API over its UNIX socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edgefleet.agent.cli import PAUSE_ENV
from edgefleet.shared.agent_config import (
    AgentConfig,
    BrokerSection,
    DeviceSection,
    InferenceSection,
    TelemetrySection,
    TrustSection,
    UpdateSection,
    pinned_root_text,
    render_agent_config,
)
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import (
    Deployment,
    Desired,
    Event,
    EventKind,
    State,
    Telemetry,
    decode_as,
    encode,
)
from edgefleet.shared.topics import Channel, artifact_topic, device_topic
from tests.agent.signed_models import chunks
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.mqtt import Recorder
from tests.shared.factories import NOW, Fleet

ROOT = Path(__file__).resolve().parents[3]
PROFILES = ROOT / "firmware_configs"
WAIT = 15.0
FLEET = Fleet()

FAST_UPDATES = UpdateSection(
    probation_seconds=0.5,
    probation_min_inferences=0,
    download_timeout_seconds=20.0,
    shadow_samples=20,
)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def agent_config(
    broker: MosquittoBroker,
    device: Credentials,
    data_dir: Path,
    socket_path: Path,
    *,
    update: UpdateSection = FAST_UPDATES,
    max_artifact_bytes: int = 1 << 20,
) -> AgentConfig:
    return AgentConfig(
        device=DeviceSection(id=device.username, profile="sim", data_dir=str(data_dir)),
        broker=BrokerSection(
            host=broker.host,
            port=broker.port,
            username=device.username,
            password=device.password,
            keepalive=5,
        ),
        trust=TrustSection(
            root=pinned_root_text(FLEET.root_v1), max_artifact_bytes=max_artifact_bytes
        ),
        telemetry=TelemetrySection(window_seconds=1.0),
        inference=InferenceSection(unix_socket=str(socket_path)),
        update=update,
    )


class Server:
    """The fleet server's side of one device: what it publishes, what it hears."""

    def __init__(self, broker: MosquittoBroker, client: mqtt.Client, device_id: str) -> None:
        self.device_id = device_id
        self.recorder = Recorder(client, timeout=WAIT)
        self.recorder.subscribe(*(device_topic(device_id, c) for c in _REPORTS))
        self.revision = 0
        """The last ``desired`` revision published; each deploy publishes the next."""
        self._retained: list[str] = []

    def publish_chunks(self, data: bytes, *, skip: frozenset[int] = frozenset()) -> None:
        sha = hashlib.sha256(data).hexdigest()
        for index, chunk in enumerate(chunks(data)):
            if index not in skip:
                self.retain(artifact_topic(sha, index), chunk)

    def deploy(self, *deployments: Deployment) -> int:
        self.revision += 1
        desired = Desired(
            revision=self.revision,
            issued_at=NOW,
            deployments=deployments,
            signing_keys=FLEET.keys_v1,
        )
        self.retain(device_topic(self.device_id, Channel.DESIRED), encode(desired))
        return self.revision

    def install(self, manifest: Manifest, data: bytes, **kw: Any) -> None:
        """Publish chunks and a desired for ``manifest``; wait until the device says healthy."""
        self.publish_chunks(data)
        self.deploy(Deployment(manifest.model, FLEET.sign(manifest), **kw))
        self.wait_event(EventKind.HEALTHY, manifest.version)

    def command(self, payload: bytes) -> None:
        self.recorder.publish(device_topic(self.device_id, Channel.CMD), payload)

    def retain(self, topic: str, payload: bytes) -> None:
        self._retained.append(topic)
        assert not self.recorder.publish(topic, payload, retain=True).is_failure

    def clear(self) -> None:
        for topic in self._retained:
            self.recorder.publish(topic, b"", retain=True)

    def events(self) -> list[Event]:
        return [decode_as(Event, p) for p in self._payloads(Channel.EVENTS)]

    def telemetry(self) -> list[Telemetry]:
        return [decode_as(Telemetry, p) for p in self._payloads(Channel.TELEMETRY)]

    def states(self) -> list[State]:
        return [decode_as(State, p) for p in self._payloads(Channel.STATE) if p]

    def wait_event(self, kind: EventKind, version: int | None = None) -> Event:
        def found() -> Event | None:
            for event in self.events():
                if event.kind is kind and version in (None, event.version):
                    return event
            return None

        seen = lambda: [(e.kind.value, e.version, e.reason) for e in self.events()]  # noqa: E731
        try:
            event: Event = wait_until(found, f"{kind.value} event for v{version}")
        except AssertionError as err:
            raise AssertionError(f"{err}; events so far: {seen()}") from None
        return event

    def _payloads(self, channel: Channel) -> list[bytes]:
        return self.recorder.payloads(device_topic(self.device_id, channel))


_REPORTS = (Channel.STATE, Channel.TELEMETRY, Channel.EVENTS, Channel.DRIFT)


@dataclass
class AgentProcess:
    """``edgefleet-agent --config`` as a child process; its stderr (JSON logs) kept."""

    config_path: Path
    socket_path: Path
    pause_in: str | None = None
    wrapper: tuple[str, ...] = ()
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)

    def start(self) -> AgentProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop(PAUSE_ENV, None)
        if self.pause_in is not None:
            env[PAUSE_ENV] = self.pause_in
        command = [
            *self.wrapper,
            sys.executable,
            "-m",
            "edgefleet.agent.cli",
            "--config",
            str(self.config_path),
            "--profiles",
            str(PROFILES),
        ]
        self.lines = []
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                self.lines.append(line.rstrip("\n"))

    def wait_api(self) -> None:
        wait_until(lambda: self._alive() and self.socket_path.exists(), "local API socket")

    def wait_line(self, text: str) -> None:
        wait_until(lambda: self._alive() and any(text in line for line in self.lines), repr(text))

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"the agent exited; its log:\n{self.log()}")
        return True

    def log(self) -> str:
        return "\n".join(self.lines[-60:])

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = _UnixConnection(str(self.socket_path))
        try:
            payload = None if body is None else json.dumps(body)
            headers = {} if body is None else {"Content-Type": "application/json"}
            connection.request(method, path, payload, headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def predict(self, inputs: Any) -> tuple[int, Any]:
        return self.request("POST", "/v1/predict", {"inputs": inputs})

    def model_version(self) -> int | None:
        status, body = self.request("GET", "/v1/model")
        return int(body["version"]) if status == 200 else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self._path)
        self.sock = sock


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a UNIX socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ef-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Device:
    """One provisioned device: its config on disk, its agent process, the server's view."""

    credentials: Credentials
    config: AgentConfig
    config_path: Path
    server: Server
    agent: AgentProcess

    @property
    def data_dir(self) -> Path:
        return Path(self.config.device.data_dir)

    def restart(self, *, pause_in: str | None = None) -> AgentProcess:
        self.agent.stop()
        self.agent = AgentProcess(
            self.config_path, self.agent.socket_path, pause_in=pause_in, wrapper=self.agent.wrapper
        ).start()
        return self.agent


def write_config(config: AgentConfig, path: Path) -> Path:
    path.write_text(render_agent_config(config), encoding="utf-8")
    path.chmod(0o600)
    return path
