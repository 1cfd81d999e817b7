"""Commands on the server host: settings from the environment, a temp SQLite DB and key dirs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from edgefleet.server import tokens
from edgefleet.server.cli import Wiring
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import AuditRecord, Role
from edgefleet.server.errors import AuthenticationError
from edgefleet.server.signing import SigningService
from tests.harness.broker import MosquittoBroker
from tests.server.cli.conftest import Cli, T, isolated_env


def database(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'data' / 'edgefleet.db').resolve()}"


# -- settings ------------------------------------------------------------------


def test_insecure_prod_settings_are_refused_without_a_traceback(local: Cli) -> None:
    result = local.fails(1, "db", "upgrade", env={"EDGEFLEET_PROFILE": "prod"})
    assert result.stderr.startswith("error: invalid settings")
    assert "EDGEFLEET_BROKER_PASSWORD" in result.stderr


# -- db ------------------------------------------------------------------------


def test_db_upgrade_is_idempotent_and_names_the_revision(local: Cli, tmp_path: Path) -> None:
    first = local.ok("db", "upgrade").stdout
    assert "upgraded from empty to 0005" in first
    assert str(tmp_path / "data" / "edgefleet.db") in first
    assert "is at head 0005; nothing to do" in local.ok("db", "upgrade").stdout


def test_db_url_password_is_not_printed(local: Cli) -> None:
    url = "postgresql+psycopg://edgefleet:hunter2@127.0.0.1:1/edgefleet"
    result = local.fails(1, "db", "upgrade", env={"EDGEFLEET_DATABASE_URL": url})
    assert "hunter2" not in result.output
    assert "postgresql+psycopg://edgefleet:***@127.0.0.1:1/edgefleet" in result.stderr
    assert "EDGEFLEET_DATABASE_URL" in result.stderr


# -- tokens --------------------------------------------------------------------


def test_token_secret_goes_alone_to_stdout_and_works(local: Cli, tmp_path: Path) -> None:
    local.ok("db", "upgrade")
    result = local.ok("tokens", "create", "alice", "--role", "operator")
    secret = result.stdout.strip()
    assert secret.startswith("eft_")
    assert "\n" not in secret
    assert "shown only once" in result.stderr
    sessions = make_sessionmaker(make_engine(database(tmp_path)))
    with sessions() as session:
        principal = tokens.authenticate(session=session, secret=secret, now=T + 1)
        assert (principal.name, principal.role) == ("alice", Role.OPERATOR)
        record = session.scalars(select(AuditRecord)).one()
        assert (record.action, record.target_id) == ("token.create", "alice")
        assert record.actor.startswith("local:")


def test_token_json_and_expiry(local: Cli, tmp_path: Path) -> None:
    local.ok("db", "upgrade")
    result = local.ok(
        "tokens", "create", "ci", "--role", "viewer", "--expires-in-days", "2", "--json"
    )
    created = json.loads(result.stdout)
    assert (created["name"], created["role"], created["created_at"]) == ("ci", "viewer", T)
    assert created["expires_at"] == T + 2 * 86_400
    sessions = make_sessionmaker(make_engine(database(tmp_path)))
    with sessions() as session, pytest.raises(AuthenticationError, match="expired"):
        tokens.authenticate(session=session, secret=created["token"], now=T + 2 * 86_400)


def test_token_errors_are_one_line(local: Cli) -> None:
    assert "db upgrade" in local.fails(1, "tokens", "create", "a", "--role", "admin").stderr
    local.ok("db", "upgrade")
    local.ok("tokens", "create", "a", "--role", "admin")
    again = local.fails(1, "tokens", "create", "a", "--role", "admin")
    assert again.stderr.startswith("error: a token named 'a' exists")
    assert "must match" in local.fails(1, "tokens", "create", "Bad Name", "--role", "admin").stderr
    local.fails(2, "tokens", "create", "b", "--role", "root")
    local.fails(2, "tokens", "create", "b", "--role", "admin", "--expires-in-days", "0")
    assert "no token named 'zed'" in local.fails(1, "tokens", "revoke", "zed").stderr


def test_token_revoke_is_idempotent(local: Cli, tmp_path: Path) -> None:
    local.ok("db", "upgrade")
    secret = local.ok("tokens", "create", "bob", "--role", "viewer").stdout.strip()
    assert local.ok("tokens", "revoke", "bob").stdout == "revoked token 'bob'\n"
    assert "already revoked" in local.ok("tokens", "revoke", "bob").stdout
    sessions = make_sessionmaker(make_engine(database(tmp_path)))
    with sessions() as session, pytest.raises(AuthenticationError, match="revoked"):
        tokens.authenticate(session=session, secret=secret, now=T + 1)


# -- keys ----------------------------------------------------------------------


def key_dirs(tmp_path: Path) -> list[str]:
    return ["--root-dir", str(tmp_path / "root"), "--signing-dir", str(tmp_path / "signing")]


def test_keys_init_is_idempotent(local: Cli, tmp_path: Path) -> None:
    created = local.ok("keys", "init", *key_dirs(tmp_path), "--json")
    info = json.loads(created.stdout)
    assert info["root_version"] == 1
    assert info["root_threshold"] == 1
    assert info["signing_keys_expires_at"] == T + 365 * 86_400
    assert "Move" in created.stderr
    assert "offline" in created.stderr
    again = local.ok("keys", "init", *key_dirs(tmp_path))
    assert "nothing changed" in again.stderr
    assert info["signing_keyid"] in again.stdout
    assert "v1, expires 2027-01-01 00:00:00Z" in again.stdout  # the key list: T + 365 days
    key_file = next((tmp_path / "signing" / "keys").glob("*.pem"))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_keys_init_threshold_and_defaults_from_settings(local: Cli, tmp_path: Path) -> None:
    local.fails(2, "keys", "init", "--root-keys", "2", "--root-threshold", "3")
    info = json.loads(
        local.ok("keys", "init", "--root-keys", "3", "--root-threshold", "2", "--json").stdout
    )
    assert (len(info["root_keyids"]), info["root_threshold"]) == (3, 2)
    # Where the server looks for them: EDGEFLEET_DATA_DIR/keys/signing.
    loaded = SigningService.load(tmp_path / "data" / "keys" / "signing")
    assert loaded.keyid == info["signing_keyid"]


def test_keys_rotate_signing_then_root(local: Cli, tmp_path: Path) -> None:
    assert (
        "run `edgefleet keys init` first"
        in local.fails(1, "keys", "rotate", *key_dirs(tmp_path)).stderr
    )
    first = json.loads(local.ok("keys", "init", *key_dirs(tmp_path), "--json").stdout)

    rotated = local.ok("keys", "rotate", *key_dirs(tmp_path), "--json")
    signing = json.loads(rotated.stdout)
    assert signing["signing_keyid"] != first["signing_keyid"]
    assert signing["revoked_keyids"] == [first["signing_keyid"]]
    assert "restart `edgefleet server`" in rotated.stderr

    kept = json.loads(
        local.ok("keys", "rotate", *key_dirs(tmp_path), "--keep-old", "--json").stdout
    )
    assert signing["signing_keyid"] in kept["listed_keyids"]

    local.fails(2, "keys", "rotate", *key_dirs(tmp_path), "--root-keys", "2")
    root = json.loads(
        local.ok(
            "keys", "rotate", "--root", *key_dirs(tmp_path), "--root-keys", "2", "--json"
        ).stdout
    )
    assert root["root_version"] == 2
    assert len(root["root_keyids"]) == 2
    assert root["root_threshold"] == 1  # as before
    assert root["signing_keyid"] == kept["signing_keyid"]
    assert len(list((tmp_path / "root" / "retired").glob("*.pem"))) == 1


def test_keys_with_the_wrong_root_dir_fail_cleanly(local: Cli, tmp_path: Path) -> None:
    local.ok("keys", "init", *key_dirs(tmp_path))
    other = ["--root-dir", str(tmp_path / "elsewhere"), "--signing-dir", str(tmp_path / "signing")]
    result = local.fails(1, "keys", "rotate", *other)
    assert result.stderr.startswith("error: ")
    assert "holds 0 of the 1 keys" in result.stderr


# -- server --------------------------------------------------------------------


def test_server_serves_the_app_from_settings(broker: MosquittoBroker, tmp_path: Path) -> None:
    served: list[tuple[str, int, int]] = []

    def serve(app: FastAPI, host: str, port: int) -> None:
        with TestClient(app) as client:
            served.append((host, port, client.get("/healthz").status_code))

    env = isolated_env(
        tmp_path,
        EDGEFLEET_API_HOST="127.0.0.2",
        EDGEFLEET_API_PORT="18443",
        EDGEFLEET_BROKER_HOST=broker.host,
        EDGEFLEET_BROKER_PORT=str(broker.port),
        EDGEFLEET_BROKER_USERNAME=broker.server_credentials.username,
        EDGEFLEET_BROKER_PASSWORD=broker.server_credentials.password,
        EDGEFLEET_BROKER_ADMIN_USERNAME=broker.admin_credentials.username,
        EDGEFLEET_BROKER_ADMIN_PASSWORD=broker.admin_credentials.password,
    )
    Cli(env, Wiring(serve=serve)).ok("server")
    assert served == [("127.0.0.2", 18443, 200)]
