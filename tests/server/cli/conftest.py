"""Run ``edgefleet`` in-process with Click's CliRunner, isolated from the caller's setup.

Remote commands reach the real app (real broker, real database) through the
``server`` fixture's TestClient, passed in as the CLI's HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner, Result

from edgefleet.server.cli import Wiring, cli
from edgefleet.server.cli.wiring import HttpClient
from edgefleet.server.db.models import Role
from tests.server.api.conftest import Server
from tests.server.api.conftest import server as server  # the fixture, for this folder

T = 1_767_225_600.0


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the CLI speaks HTTP and the API is tested on both backends already."""
    return f"sqlite:///{tmp_path / 'edgefleet.db'}"


@dataclass
class Cli:
    """``cli("devices", "list")``: invoke with this environment and wiring."""

    env: dict[str, str | None]
    wiring: Wiring = field(default_factory=Wiring)

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Result:
        return CliRunner().invoke(
            cli, list(args), obj=self.wiring, env={**self.env, **(env or {})}, input=input
        )

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    def fails(self, code: int, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == code, (result.output, result.exception)
        assert isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result


def isolated_env(tmp_path: Path, **extra: str | None) -> dict[str, str | None]:
    """No URL, token or config file from the machine running the tests."""
    return {
        "EDGEFLEET_URL": None,
        "EDGEFLEET_TOKEN": None,
        "EDGEFLEET_CLI_CONFIG": str(tmp_path / "no-cli.toml"),
        "EDGEFLEET_PROFILE": "dev",
        "EDGEFLEET_DATA_DIR": str(tmp_path / "data"),
        "EDGEFLEET_DATABASE_URL": None,
        "EDGEFLEET_SIGNING_DIR": None,
        # A server started here must not leave a session in the session broker's
        # share group: Mosquitto would keep handing it other tests' messages.
        "EDGEFLEET_BROKER_SESSION_EXPIRY": "0",
        **extra,
    }


def http_to(client: object) -> Callable[[str], AbstractContextManager[HttpClient]]:
    """An ``open_http`` that hands out ``client`` (the TestClient: httpx-compatible)."""
    return lambda _url: nullcontext(cast(HttpClient, client))


@pytest.fixture
def local(tmp_path: Path) -> Cli:
    """For commands on the server host: dev profile, data dir in tmp_path, a fixed clock."""
    return Cli(isolated_env(tmp_path), Wiring(clock=lambda: T))


@pytest.fixture
def remote(server: Server, tmp_path: Path) -> Cli:
    """For API commands: the running app as transport, an operator token in the environment."""
    env = isolated_env(
        tmp_path,
        EDGEFLEET_TOKEN=server.tokens[Role.OPERATOR],
        EDGEFLEET_DATABASE_URL=server.services.settings.effective_database_url,
    )
    return Cli(env, Wiring(open_http=http_to(server.client)))


def lines(text: str) -> Sequence[str]:
    return [line for line in text.splitlines() if line.strip()]
