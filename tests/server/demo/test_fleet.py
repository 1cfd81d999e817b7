"""The demo's fleet: its split into two sites, provisioned through the simulator's
provisioning against a real server and broker, and run with the demo's agent settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.server.cli.client import ApiClient
from edgefleet.server.cli.connection import Connection
from edgefleet.server.db.models import Role
from edgefleet.server.demo.run import (
    GROUP_A,
    GROUP_B,
    PREFIX,
    SITE_A,
    SITE_B,
    UPDATE,
    DemoOptions,
    fleet_spec,
    host_devices,
)
from edgefleet.server.sim.provision import KEEPALIVE, provision
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import running_server, server_settings


@pytest.mark.parametrize(("devices", "site_a", "site_b"), [(3, 1, 2), (4, 2, 2), (12, 4, 8)])
def test_a_third_of_the_fleet_is_site_a(
    tmp_path: Path, devices: int, site_a: int, site_b: int
) -> None:
    spec = fleet_spec(DemoOptions(data_dir=tmp_path, devices=devices))
    assert spec.group_sizes() == {SITE_A: site_a, SITE_B: site_b}


def test_the_demo_fleet_is_provisioned_and_run_as_the_simulator_does(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    options = DemoOptions(data_dir=tmp_path, window_seconds=2.5)
    spec = fleet_spec(options)
    said: list[str] = []
    settings = server_settings(broker, f"sqlite:///{tmp_path / 'edgefleet.db'}", tmp_path / "srv")
    with running_server(settings) as server:
        connection = Connection("http://testserver", server.tokens[Role.OPERATOR], Path("-"))
        api = ApiClient(server.client, connection)
        made = provision(api, fleet=spec, prefix=PREFIX, data_dir=tmp_path, say=said.append)
        groups = {
            name: sorted(api.get(f"/groups/{name}")["members"]) for name in (GROUP_A, GROUP_B)
        }

    ids = [f"demo-{n:05d}" for n in range(1, 13)]
    assert list(made.configs) == ids
    assert groups == {GROUP_A: ids[:4], GROUP_B: ids[4:]}
    assert said == ["devices: 12/12 ready (12 provisioned or re-keyed)"]

    devices = host_devices(made, spec, tmp_path)
    assert [(d.config.device.id, d.group) for d in devices] == [
        *((i, SITE_A) for i in ids[:4]),
        *((i, SITE_B) for i in ids[4:]),
    ]
    assert len({d.offset for d in devices}) == len(ids)
    for device in devices:
        config = device.config
        assert config.device.data_dir == str(tmp_path / "agents" / config.device.id)
        assert config.update == UPDATE
        assert config.update.max_latency_ratio == 50.0
        assert (config.telemetry.window_seconds, config.broker.keepalive) == (2.5, KEEPALIVE)
        assert config.broker.password == made.configs[config.device.id].broker.password
