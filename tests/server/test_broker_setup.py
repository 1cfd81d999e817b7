"""``edgefleet broker init`` output runs a real Mosquitto the server can use."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefleet.server.broker_accounts import BrokerAccounts
from edgefleet.server.broker_setup import init_broker, read_env
from edgefleet.server.cli import main
from edgefleet.server.cli.root import cli
from edgefleet.server.errors import ConfigError
from edgefleet.server.mqtt import MqttTransport
from tests.harness._system import free_loopback_port


@pytest.fixture
def directory() -> Iterator[Path]:
    # Not tmp_path: as root, mosquitto drops to its own user, who must reach the folder.
    path = Path(tempfile.mkdtemp(prefix="edgefleet-broker-init-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_init_writes_a_broker_the_server_can_log_into(directory: Path) -> None:
    port = free_loopback_port()
    files = init_broker(directory, port=port)
    assert files.created
    assert (files.env.stat().st_mode & 0o777) == 0o600
    env = read_env(files.env)
    process = subprocess.Popen(["mosquitto", "-c", str(files.conf)], stderr=subprocess.PIPE)
    admin = MqttTransport(
        host="127.0.0.1",
        port=port,
        username=env["EDGEFLEET_BROKER_ADMIN_USERNAME"],
        password=env["EDGEFLEET_BROKER_ADMIN_PASSWORD"],
        client_id="init-admin",
    )
    server = MqttTransport(
        host="127.0.0.1",
        port=port,
        username=env["EDGEFLEET_BROKER_USERNAME"],
        password=env["EDGEFLEET_BROKER_PASSWORD"],
        client_id="init-server",
    )
    try:
        admin.start()
        server.start()
        assert admin.wait_connected(10), "admin account refused"
        assert server.wait_connected(10), "server account refused"
        password = BrokerAccounts(admin).provision_device("cam-1")
        device = MqttTransport(
            host="127.0.0.1", port=port, username="cam-1", password=password, client_id="cam-1"
        )
        device.start()
        try:
            assert device.wait_connected(10)
        finally:
            device.stop()
    finally:
        admin.stop()
        server.stop()
        process.terminate()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


def test_init_is_idempotent_and_refuses_a_half_setup(directory: Path) -> None:
    first = init_broker(directory, port=1883)
    env = first.env.read_bytes()
    again = init_broker(directory, port=1884)
    assert not again.created
    assert again.env.read_bytes() == env
    first.env.unlink()
    with pytest.raises(ConfigError, match="holds only"):
        init_broker(directory)


def test_cli_prints_how_to_run_it(directory: Path) -> None:
    result = CliRunner().invoke(cli, ["broker", "init", str(directory / "b"), "--port", "1999"])
    assert result.exit_code == 0, result.output
    assert "mosquitto -c" in result.output
    assert main(["broker", "init", "--help"]) == 0
