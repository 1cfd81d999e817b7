"""A provisioned device with its agent process, per test; every test here is end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent.e2e.harness import (
    AgentProcess,
    Device,
    Server,
    agent_config,
    short_dir,
    write_config,
)
from tests.agent.signed_models import manifest_for
from tests.conftest import ClientFactory, DeviceFactory
from tests.harness.broker import MosquittoBroker
from tests.harness.models import TfliteModels

DeviceMaker = Callable[..., Device]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/agent/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def make_device(
    broker: MosquittoBroker,
    device_credentials: DeviceFactory,
    mqtt_client: ClientFactory,
    tmp_path: Path,
) -> Iterator[DeviceMaker]:
    """``make_device(**config_overrides)``: a provisioned device, its agent not yet started."""
    made: list[Device] = []
    with short_dir() as sockets:

        def make(
            data_dir: Path | None = None, wrapper: tuple[str, ...] = (), **kw: object
        ) -> Device:
            credentials = device_credentials("agent")
            socket_path = sockets / f"{credentials.username}.sock"
            config = agent_config(
                broker,
                credentials,
                data_dir or tmp_path / credentials.username,
                socket_path,
                **kw,  # type: ignore[arg-type]
            )
            path = write_config(config, tmp_path / f"{credentials.username}.toml")
            server = Server(broker, mqtt_client(broker.server_credentials), credentials.username)
            agent = AgentProcess(path, socket_path, wrapper=wrapper)
            device = Device(credentials, config, path, server, agent)
            made.append(device)
            return device

        yield make
        for device in made:
            device.agent.stop()
            device.server.clear()


@pytest.fixture
def make_serving(make_device: DeviceMaker, tflite_models: TfliteModels) -> DeviceMaker:
    """``make_serving(**config_overrides)``: a device whose agent runs and serves v1 (float32)."""

    def make(**kw: object) -> Device:
        device = make_device(**kw)
        device.agent.start().wait_api()
        device.server.install(manifest_for(tflite_models.float32, 1), tflite_models.float32)
        return device

    return make
