"""Provisioning the simulated fleet through the real API: files, re-runs, groups, refusals."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.server.cli.client import ApiClient
from edgefleet.server.cli.connection import Connection
from edgefleet.server.db.models import Role
from edgefleet.server.errors import ConflictError, InvalidInputError
from edgefleet.server.sim.provision import (
    DRIFT,
    KEEPALIVE,
    UPDATE,
    check_names,
    device_ids,
    provision,
    sim_config,
)
from edgefleet.server.sim.scenario import FleetSpec
from edgefleet.shared.agent_config import (
    AgentConfig,
    BrokerSection,
    DeviceSection,
    TrustSection,
    UpdateSection,
)
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import running_server, server_settings


def fleet(**groups: int) -> FleetSpec:
    return FleetSpec(devices=sum(groups.values()), duration=60.0, groups=tuple(groups.items()))


@pytest.fixture
def api(broker: MosquittoBroker, db_url: str, tmp_path: Path) -> Iterator[ApiClient]:
    with running_server(server_settings(broker, db_url, tmp_path / "server")) as server:
        connection = Connection("http://testserver", server.tokens[Role.OPERATOR], Path("-"))
        yield ApiClient(server.client, connection)


def members(api: ApiClient, name: str) -> list[str]:
    return sorted(api.get(f"/groups/{name}")["members"])


def test_a_rerun_reuses_the_configs_and_moves_devices_between_groups(
    api: ApiClient, tmp_path: Path
) -> None:
    said: list[str] = []
    first = provision(api, fleet=fleet(a=2, b=3), prefix="t1", data_dir=tmp_path, say=said.append)
    ids = device_ids("t1", 5)
    assert ids == ["t1-00001", "t1-00002", "t1-00003", "t1-00004", "t1-00005"]
    assert list(first.configs) == ids
    for device_id in ids:
        path = tmp_path / "devices" / f"{device_id}.toml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert first.configs[device_id].broker.username == device_id
    assert (members(api, "t1-a"), members(api, "t1-b")) == (ids[:2], ids[2:])
    assert said == ["devices: 5/5 ready (5 provisioned or re-keyed)"]

    said.clear()
    again = provision(api, fleet=fleet(a=4, b=1), prefix="t1", data_dir=tmp_path, say=said.append)
    assert again.configs == first.configs
    assert said == ["devices: 5/5 ready (0 provisioned or re-keyed)"]
    assert (members(api, "t1-a"), members(api, "t1-b")) == (ids[:4], ids[4:])
    assert again.groups == {"a": tuple(ids[:4]), "b": tuple(ids[4:])}


def test_a_device_known_to_the_server_but_without_a_file_gets_new_credentials(
    api: ApiClient, tmp_path: Path
) -> None:
    first = provision(api, fleet=fleet(fleet=2), prefix="t2", data_dir=tmp_path, say=lambda _: None)
    (tmp_path / "devices" / "t2-00002.toml").unlink()
    said: list[str] = []
    again = provision(api, fleet=fleet(fleet=2), prefix="t2", data_dir=tmp_path, say=said.append)
    assert said == ["devices: 2/2 ready (1 provisioned or re-keyed)"]
    assert again.configs["t2-00001"] == first.configs["t2-00001"]
    assert again.configs["t2-00002"].broker.password != first.configs["t2-00002"].broker.password
    assert (tmp_path / "devices" / "t2-00002.toml").exists()


def test_devices_or_groups_that_are_not_the_simulators_are_left_alone(
    api: ApiClient, tmp_path: Path
) -> None:
    api.post("/devices", json={"id": "t3-00001", "profile": "rpi4"})
    with pytest.raises(ConflictError, match="not a simulated device; choose another --prefix"):
        provision(api, fleet=fleet(fleet=1), prefix="t3", data_dir=tmp_path, say=lambda _: None)
    api.post("/devices", json={"id": "cam-1", "profile": "rpi4"})
    api.post("/groups", json={"name": "t4-fleet", "kind": "static", "members": ["cam-1"]})
    with pytest.raises(ConflictError, match="1 other devices\\); choose another --prefix"):
        provision(api, fleet=fleet(fleet=1), prefix="t4", data_dir=tmp_path, say=lambda _: None)
    assert members(api, "t4-fleet") == ["cam-1"]


def test_a_prefix_that_cannot_name_the_fleet_is_refused_up_front() -> None:
    with pytest.raises(InvalidInputError, match="--prefix 'Sim' makes the name 'Sim-00001'"):
        check_names("Sim", fleet(fleet=1))
    with pytest.raises(InvalidInputError, match="which the server refuses"):
        check_names("s" * 60, fleet(fleet=1))
    check_names("sim", fleet(fleet=10))


def test_the_simulator_runs_a_config_with_its_own_settings(tmp_path: Path) -> None:
    config = AgentConfig(
        device=DeviceSection(id="sim-00001", profile="sim"),
        broker=BrokerSection(host="127.0.0.1", port=1883, username="sim-00001", password="x" * 16),
        trust=TrustSection(root="{}"),
    )
    ran = sim_config(config, data_dir=tmp_path / "agents" / "sim-00001", window_seconds=2.0)
    assert ran.device.data_dir == str(tmp_path / "agents" / "sim-00001")
    assert (ran.broker.keepalive, ran.broker.password) == (KEEPALIVE, "x" * 16)
    assert ran.telemetry.window_seconds == 2.0
    assert ran.telemetry.outbox_max_bytes == config.telemetry.outbox_max_bytes
    assert (ran.drift, ran.update) == (DRIFT, UPDATE)
    loose = UpdateSection(probation_seconds=1.0, max_latency_ratio=9.0)
    ran = sim_config(config, data_dir=tmp_path, window_seconds=2.0, update=loose)
    assert (ran.drift, ran.update) == (DRIFT, loose)
