"""A fleet for rollout tests: the real server, the real broker and real agents in this process.

Devices are provisioned through the server's API and run the agent from the
config bundle the server hands out (only the data directory and the update
rules are the test's own); they sit in one static group and serve real
TFLite models. The TFLite runtime is loaded here, at collection, before any
fixture imports TensorFlow (see ``tests/agent/conftest.py``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from edgefleet.agent.agent import Agent, Exit
from edgefleet.agent.errors import AgentError, NoModelError
from edgefleet.agent.runtime import load_runtime
from edgefleet.server import registry
from edgefleet.server.db.models import Device, Role
from edgefleet.server.settings import Settings
from edgefleet.shared.agent_config import (
    AgentConfig,
    DriftSection,
    TelemetrySection,
    UpdateSection,
    parse_agent_config,
)
from edgefleet.shared.manifest import SelfTest
from edgefleet.shared.messages import Desired, decode_as
from edgefleet.shared.profiles import HardwareProfile, parse_profile
from edgefleet.shared.topics import Channel, DeviceTopic, device_topic, parse_topic
from tests.agent.e2e.harness import wait_until
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.models import build_slow_classifier
from tests.harness.mqtt import Recorder
from tests.server.api.conftest import REPO, Server, running_server, server_settings, unique_id

load_runtime()

MODEL = "vibration"
TICK_SECONDS = 0.3
WAIT = 30.0
PROBATION = UpdateSection(
    probation_seconds=1.0,
    probation_min_inferences=0,
    download_timeout_seconds=20.0,
)
"""Short probation so a wave's devices say ``healthy`` about a second after they install."""

METERED = DriftSection()
"""The agent's default drift uplink budget."""

FleetMaker = Callable[..., "Fleet"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/rollouts/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


def polled(condition: Callable[[], Any], every: float = 0.1) -> Callable[[], Any]:
    """``condition`` asked at most every ``every`` seconds: it reads the API or the database,
    which share two cores with twenty agents."""

    def slower() -> Any:
        time.sleep(every)
        return condition()

    return slower


class FleetAgent:
    """One device's agent running in a thread of this process, as ``edgefleet-agent`` runs it.

    A ``restart`` exit (a rolled-back model that only a restart unloads) builds
    the agent again from the same config, as the CLI's exec would.
    """

    def __init__(self, config: AgentConfig, profile: HardwareProfile) -> None:
        self.device_id = config.device.id
        self.config = config
        self._profile = profile
        self._stop = threading.Event()
        self._serving = threading.Event()
        self.agent = Agent.from_config(config, profile=profile)
        self._thread = threading.Thread(target=self._run, name=f"agent-{self.device_id}")
        self._thread.start()
        self._load: threading.Thread | None = None

    def _run(self) -> None:
        while self.agent.run(self._stop) is Exit.RESTART and not self._stop.is_set():
            self.agent = Agent.from_config(self.config, profile=self._profile)

    def active(self) -> tuple[int, str] | None:
        """(version, sha256) of the model this agent serves right now."""
        served = self.agent._parts.service.active  # noqa: SLF001  in-process test hook
        if served is None:
            return None
        manifest = served.runner.manifest
        return manifest.version, manifest.artifact.sha256

    def active_version(self) -> int | None:
        active = self.active()
        return None if active is None else active[0]

    def predict(self, inputs: Any) -> Any:
        return self.agent._parts.service.predict(inputs)  # noqa: SLF001  in-process test hook

    def serve(self, every: float = 0.005, rows: npt.NDArray[np.float32] | None = None) -> None:
        """Serve inferences on a steady stream of inputs from now until stopped: ``rows``
        (batches of one) in a loop, or 256 uniform draws for the 4-input test classifier."""
        if rows is None:
            rows = np.random.default_rng(0).uniform(-1.0, 1.0, (256, 1, 4)).astype(np.float32)
        self._serving.set()
        self._load = threading.Thread(
            target=self._serve_loop, args=(every, rows), name=f"load-{self.device_id}"
        )
        self._load.start()

    def stop_serving(self) -> None:
        self._serving.clear()
        if self._load is not None:
            self._load.join(10)
            self._load = None

    def _serve_loop(self, every: float, rows: npt.NDArray[np.float32]) -> None:
        index = 0
        while self._serving.is_set() and not self._stop.is_set():
            try:
                self.predict(rows[index % len(rows)])
            except (NoModelError, AgentError):
                pass  # between models, or the agent restarting: callers see it too
            index += 1
            time.sleep(every)

    def stop(self) -> None:
        self._stop.set()
        self.stop_serving()
        self._thread.join(30)


class Fleet:
    """The server (restartable), the group's devices and their agents."""

    def __init__(self, broker: MosquittoBroker, settings: Settings, root: Path) -> None:
        self.broker = broker
        self.settings = settings
        self.root = root
        self.group = unique_id("fleet")
        self.agents: list[FleetAgent] = []
        self.configs: dict[str, AgentConfig] = {}
        """Every provisioned device's agent config, whether or not an agent runs here."""
        self._server_stack: ExitStack | None = None
        self._server: Server | None = None
        self._watchers: list[DesiredWatcher] = []
        self._profile = parse_profile((REPO / "firmware_configs" / "sim.toml").read_text())

    # -- server ------------------------------------------------------------------

    @property
    def server(self) -> Server:
        assert self._server is not None, "the server is stopped"
        return self._server

    def start_server(self) -> Server:
        stack = ExitStack()
        self._server = stack.enter_context(running_server(self.settings, names=unique_id("t")))
        self._server_stack = stack
        return self._server

    def stop_server(self) -> None:
        if self._server_stack is not None:
            self._server_stack.close()
        self._server_stack = None
        self._server = None

    def api(self, method: str, path: str, role: Role = Role.ADMIN, **kw: Any) -> Any:
        return self.server.client.request(
            method, f"/api/v1{path}", headers=self.server.headers(role), **kw
        )

    def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        response = self.api(method, path, **kw)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    # -- devices -----------------------------------------------------------------

    def provision(
        self,
        count: int,
        update: UpdateSection,
        *,
        agents: bool = True,
        window_seconds: float = 1.0,
        drift: DriftSection = METERED,
    ) -> list[str]:
        """``count`` devices through the API, all in the fleet's group, their agents
        running and online unless ``agents`` is false; their ids."""
        ids = [unique_id("ro") for _ in range(count)]
        for device_id in ids:
            bundle = self.call(
                "POST", "/devices", expect=201, json={"id": device_id, "profile": "sim"}
            )
            config = parse_agent_config(bundle["agent_config"])
            config = dataclasses.replace(
                config,
                device=dataclasses.replace(config.device, data_dir=str(self.root / device_id)),
                broker=dataclasses.replace(config.broker, keepalive=5),
                telemetry=TelemetrySection(window_seconds=window_seconds),
                drift=drift,
                update=update,
            )
            self.configs[device_id] = config
            if agents:
                self.agents.append(FleetAgent(config, self._profile))
        self.call(
            "POST",
            "/groups",
            expect=201,
            json={"name": self.group, "kind": "static", "members": ids},
        )
        if agents:
            wait_until(polled(lambda: self.online() == set(ids)), "every device online", WAIT)
        return ids

    def online(self) -> set[str]:
        with self.server.services.sessions() as session:
            return set(session.scalars(select(Device.id).where(Device.state == "online")))

    def revive(self, device_id: str) -> FleetAgent:
        """Start a stopped device's agent again on its data directory."""
        index = next(i for i, a in enumerate(self.agents) if a.device_id == device_id)
        self.agents[index].stop()
        self.agents[index] = FleetAgent(self.agents[index].config, self._profile)
        return self.agents[index]

    def watch_desired(self) -> DesiredWatcher:
        """From now on, every ``desired`` published to the fleet's devices."""
        self._watchers.append(DesiredWatcher(self.broker, [a.config for a in self.agents]))
        return self._watchers[-1]

    def agent(self, device_id: str) -> FleetAgent:
        return next(a for a in self.agents if a.device_id == device_id)

    def running(self) -> dict[str, int | None]:
        """Each device's active version as the server knows it (its retained state)."""
        with self.server.services.sessions() as session:
            devices = session.scalars(
                select(Device).where(Device.id.in_([a.device_id for a in self.agents]))
            ).all()
        found: dict[str, int | None] = {}
        for device in devices:
            found[device.id] = next(
                (s["version"] for s in device.running if s.get("model") == MODEL and s["active"]),
                None,
            )
        return found

    def wait_serving(self, version: int, agents: list[FleetAgent] | None = None) -> None:
        """Until every agent serves ``version`` and the server heard so from each."""
        chosen = self.agents if agents is None else agents
        wait_until(
            lambda: all(a.active_version() == version for a in chosen),
            f"agents serving v{version}",
            WAIT,
        )
        wait_until(
            polled(lambda: all(self.running().get(a.device_id) == version for a in chosen)),
            f"server knows the agents serve v{version}",
            WAIT,
        )

    # -- models and rollouts -----------------------------------------------------

    def register(self, data: bytes, *, self_test: SelfTest | None = None) -> int:
        """A new approved version of the fleet's model; its number.

        Uploaded through the API unless a self-test is given: the upload form has
        no field for one, so that goes through the registry the route calls.
        """
        if self_test is None:
            version = self.call(
                "POST",
                f"/models/{MODEL}/versions",
                expect=201,
                files={"file": ("model.tflite", data, "application/octet-stream")},
                data={"profiles": "sim", "variant": "float32"},
            )["version"]
        else:
            services = self.server.services
            with services.sessions() as session:
                version = registry.add_version(
                    session=session,
                    model_name=MODEL,
                    uploads=[registry.ArtifactUpload("sim", "float32", data, self_test=self_test)],
                    spec=registry.VersionSpec(),
                    store=services.artifacts,
                    signing=services.signing,
                    catalog=services.catalog,
                    actor="test",
                    now=services.clock(),
                ).version
        self.call("PATCH", f"/models/{MODEL}/versions/{version}", json={"stage": "approved"})
        return int(version)

    def start_rollout(self, version: int, policy: dict[str, Any]) -> str:
        created = self.call(
            "POST",
            "/rollouts",
            expect=201,
            json={"group": self.group, "model": MODEL, "version": version, "policy": policy},
        )
        self.call("POST", f"/rollouts/{created['id']}/start")
        return str(created["id"])

    def status(self, rollout_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/rollouts/{rollout_id}")
        return result

    def devices(self, rollout_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", f"/rollouts/{rollout_id}/devices")
        return result

    def wait_rollout(self, rollout_id: str, *states: str, timeout: float = WAIT) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> bool:
            last.update(self.status(rollout_id))
            return last["state"] in states

        try:
            wait_until(polled(reached), f"rollout in {states}", timeout)
        except AssertionError as err:
            raise AssertionError(f"{err}; last status: {last}") from None
        return last

    def install(self, version: int) -> str:
        """Every device on ``version`` by a one-wave rollout; the rollout's id."""
        rollout_id = self.start_rollout(
            version, {"waves": [{"percent": 100, "soak_seconds": 0}], "gates": NO_GATES}
        )
        self.wait_rollout(rollout_id, "completed")
        self.wait_serving(version)
        return rollout_id

    def stop(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        for agent in self.agents:
            agent.stop()
        self.stop_server()
        if self.settings.broker_session_expiry:
            end_session(self.broker, self.settings.broker_client_id)


def end_session(broker: MosquittoBroker, client_id: str) -> None:
    """Make the broker drop the session a stopped server kept: left behind, it would take its
    share of every later test's device messages for as long as it lives."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.server_credentials.username, broker.server_credentials.password)
    answered = threading.Event()
    client.on_connect = lambda *_: answered.set()
    client.connect(broker.host, broker.port, clean_start=True)
    client.loop_start()
    try:
        assert answered.wait(10), "the broker did not answer the session clean-up"
    finally:
        client.disconnect()
        client.loop_stop()


class DesiredWatcher:
    """Every ``desired`` the server publishes while watching, as (device, revision).

    One client per device, on the device's own credentials (the only account
    the broker lets read a ``desired``). Live publishes only: a retained copy
    handed over on subscribing is the broker's, not a new delivery.
    """

    def __init__(self, broker: MosquittoBroker, configs: list[AgentConfig]) -> None:
        self._recorders = []
        for config in configs:
            credentials = Credentials(config.broker.username, config.broker.password)
            recorder = Recorder(broker.client(credentials))
            codes = recorder.subscribe(device_topic(config.device.id, Channel.DESIRED))
            assert not any(code.is_failure for code in codes), codes
            self._recorders.append(recorder)

    def deliveries(self) -> list[tuple[str, int]]:
        found = []
        for recorder in self._recorders:
            for message in recorder.messages:
                if message.retain or not message.payload:
                    continue
                address = parse_topic(message.topic)
                assert isinstance(address, DeviceTopic)
                found.append(
                    (address.device_id, decode_as(Desired, bytes(message.payload)).revision)
                )
        return found

    def close(self) -> None:
        for recorder in self._recorders:
            recorder.client.disconnect()
            recorder.client.loop_stop()


NO_GATES: dict[str, Any] = {
    "max_error_rate_increase": None,
    "max_p95_latency_ratio": None,
    "max_output_psi": None,
}
"""Health gates off: for rollouts that only install a version."""


@pytest.fixture
def make_fleet(broker: MosquittoBroker, db_url: str, tmp_path: Path) -> Iterator[FleetMaker]:
    """``make_fleet(size, update=PROBATION, agents=True, window_seconds=1.0, drift=METERED,
    **settings)``: a running server and ``size`` devices in one group, their agents online unless
    ``agents`` is false."""
    made: list[Fleet] = []

    def make(
        size: int,
        update: UpdateSection = PROBATION,
        *,
        agents: bool = True,
        window_seconds: float = 1.0,
        drift: DriftSection = METERED,
        **overrides: Any,
    ) -> Fleet:
        settings = server_settings(
            broker, db_url, tmp_path / "server", rollout_tick_seconds=TICK_SECONDS, **overrides
        )
        fleet = Fleet(broker, settings, tmp_path / "agents")
        made.append(fleet)
        fleet.start_server()
        fleet.provision(size, update, agents=agents, window_seconds=window_seconds, drift=drift)
        return fleet

    yield make
    for fleet in made:
        fleet.stop()


@pytest.fixture(scope="session")
def slow_model() -> bytes:
    """The classifier's signature at many times its latency."""
    return build_slow_classifier()
