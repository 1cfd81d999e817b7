"""One real server per test module and database backend, for tests that only read
or that keep to their own names: starting a server per test costs seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import Server, running_server, server_settings

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def module_server(
    request: pytest.FixtureRequest, broker: MosquittoBroker, names: str
) -> Iterator[Server]:
    """Use from a module-scoped fixture parametrized with :data:`BACKENDS`."""
    data = request.getfixturevalue("tmp_path_factory").mktemp(names)
    cluster = None if request.param == "sqlite" else request.getfixturevalue("postgres")
    name = f"{names}_{uuid.uuid4().hex[:12]}"
    url = f"sqlite:///{data / 'edgefleet.db'}" if cluster is None else cluster.create_database(name)
    try:
        with running_server(server_settings(broker, url, data / "data"), names=names) as server:
            yield server
    finally:
        if cluster is not None:
            cluster.drop_database(name)
