"""Fixtures that hand tests real infrastructure: Mosquitto, SQLite and PostgreSQL.

Each server starts once per session and only if a selected test needs it.
Tests are marked by what they use (``broker``, ``postgres``) at collection, so
``-m "not broker and not postgres"`` is the quick stage. PostgreSQL comes from
``$EDGEFLEET_TEST_POSTGRES_URL`` when set (see :mod:`tests.harness.postgres`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.models import TfliteModels, build_tflite_models
from tests.harness.postgres import PostgresCluster

_BROKER = pytest.StashKey[MosquittoBroker]()
_device_numbers = itertools.count(1)

DeviceFactory = Callable[..., Credentials]
ClientFactory = Callable[..., mqtt.Client]


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as running:
        request.config.stash[_BROKER] = running
        yield running


@pytest.fixture
def device_credentials(broker: MosquittoBroker) -> Iterator[DeviceFactory]:
    """``device_credentials(prefix="dev")``: provisions a device id never seen before in this run.

    Fresh ids keep tests apart on the shared broker: no retained message or
    session of another test lives on their topics. Provisioned through the
    server's :class:`~edgefleet.server.broker_accounts.BrokerAccounts`, revoked afterwards.
    """
    provisioned: list[str] = []

    def provision(prefix: str = "dev") -> Credentials:
        device_id = f"{prefix}-{next(_device_numbers)}"
        provisioned.append(device_id)
        return broker.add_device(device_id)

    yield provision
    for device_id in provisioned:
        if device_id in broker.devices:  # a test may have removed it itself
            broker.remove_device(device_id)


@pytest.fixture
def mqtt_client(
    broker: MosquittoBroker, device_credentials: DeviceFactory
) -> Iterator[ClientFactory]:
    """``mqtt_client(credentials, protocol=mqtt.MQTTv5)``: a connected client, loop running.

    Asks for ``device_credentials`` only so that it is torn down after this
    fixture: clients disconnect before their devices are removed.
    """
    clients: list[mqtt.Client] = []

    def connect(
        credentials: Credentials, *, protocol: MQTTProtocolVersion = mqtt.MQTTv5
    ) -> mqtt.Client:
        client = broker.client(credentials, protocol=protocol)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(scope="session")
def tflite_models() -> TfliteModels:
    """A Dense 4 -> 8 -> 3 softmax classifier as float32 and full-integer int8 files."""
    return build_tflite_models()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster.from_environment() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database; a test asking for it runs on both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'edgefleet.db'}"
        return
    # Looked up here, not requested, so the SQLite run never starts PostgreSQL.
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    name = f"edgefleet_test_{uuid.uuid4().hex[:12]}"
    url = cluster.create_database(name)
    yield url
    cluster.drop_database(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # The closure holds every fixture a test pulls in, directly or not.
        fixtures = set(getattr(item, "fixturenames", ()))
        if "broker" in fixtures:
            item.add_marker(pytest.mark.broker)
        if "postgres" in fixtures:
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the broker's log to a failed broker test: the denials are in there."""
    report: pytest.TestReport = yield
    running = item.config.stash.get(_BROKER, None)
    if report.failed and running is not None and "broker" in item.keywords:
        report.sections.append(("mosquitto log (tail)", running.log_tail(60)))
    return report
