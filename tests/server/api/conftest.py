"""A running server (real broker, real database) and tokens for each role."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from edgefleet.server.app import create_app
from edgefleet.server.db.models import Role
from edgefleet.server.services import Services
from edgefleet.server.settings import Profile, Settings
from edgefleet.server.tokens import create_token
from tests.harness.broker import MosquittoBroker

REPO = Path(__file__).resolve().parents[3]
_numbers = itertools.count(1)


@dataclass
class Server:
    client: TestClient
    services: Services
    tokens: dict[Role, str]

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def wait_ingested(self, timeout: float = 10.0) -> None:
        assert self.client.app.state.runtime.ingest.wait_idle(timeout)  # type: ignore[attr-defined]


def unique_id(prefix: str = "dev") -> str:
    return f"{prefix}-{next(_numbers)}-{uuid.uuid4().hex[:6]}"


def server_settings(
    broker: MosquittoBroker, db_url: str, data_dir: Path, **overrides: Any
) -> Settings:
    defaults: dict[str, Any] = {
        "profile": Profile.DEV,
        "data_dir": data_dir,
        "database_url": db_url,
        "broker_host": broker.host,
        "broker_port": broker.port,
        "broker_username": broker.server_credentials.username,
        "broker_password": SecretStr(broker.server_credentials.password),
        "broker_admin_username": broker.admin_credentials.username,
        "broker_admin_password": SecretStr(broker.admin_credentials.password),
        "profiles_dir": REPO / "firmware_configs",
        "ingest_flush_seconds": 0.05,
        # Each test's server is a new replica: no session left behind to take a share.
        "broker_client_id": f"edgefleet-ingest-test-{uuid.uuid4().hex[:12]}",
        "broker_session_expiry": 0,
    }
    return Settings(**(defaults | overrides))


@contextmanager
def running_server(settings: Settings, names: str = "t") -> Iterator[Server]:
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]
        assert client.app.state.runtime.server.wait_connected(10)  # type: ignore[attr-defined]
        tokens = {}
        with services.sessions() as session:
            for role in Role:
                _, secret = create_token(
                    session=session,
                    name=f"{names}-{role.value}",
                    role=role,
                    actor="test-setup",
                    now=services.clock(),
                )
                tokens[role] = secret
            session.commit()
        yield Server(client=client, services=services, tokens=tokens)


@pytest.fixture
def server(broker: MosquittoBroker, db_url: str, tmp_path: Path) -> Iterator[Server]:
    with running_server(server_settings(broker, db_url, tmp_path / "data")) as running:
        yield running
