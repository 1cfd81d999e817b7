"""Commands that run on the server host and read ``EDGEFLEET_*`` settings, not the API.

``server``, ``db upgrade`` and ``tokens``: the first admin token can only be
made here, since every API call needs one.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from edgefleet.server import tokens as token_service
from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.output import print_json, when
from edgefleet.server.cli.wiring import wiring
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import NAME, Role
from edgefleet.server.settings import Settings, load_settings

DAY = 86_400
SETTINGS_HELP = (
    "Reads the server's settings from EDGEFLEET_* variables: EDGEFLEET_PROFILE, "
    "EDGEFLEET_DATA_DIR, EDGEFLEET_DATABASE_URL, EDGEFLEET_BROKER_*..."
)


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _local_actor() -> str:
    """The audit log's actor for changes made here: ``local:{os user}``.

    The colon is outside the token-name alphabet, so no API token can pose as it.
    """
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"local:{user}"[:NAME]


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    """The settings' database; its driver's errors become one ``error:`` line."""
    url = settings.effective_database_url
    engine = make_engine(url)
    try:
        yield engine
    except SQLAlchemyError as err:
        cause = getattr(err, "orig", None) or err
        raise CliError(
            f"database {_redacted(url)}: {cause}",
            hint="check EDGEFLEET_DATABASE_URL (or EDGEFLEET_DATA_DIR for the SQLite default)",
        ) from err
    finally:
        engine.dispose()


def _require_database(settings: Settings) -> None:
    """Refuse a missing default SQLite file rather than create an empty one."""
    default = settings.data_dir / "edgefleet.db"
    if settings.database_url is None and not default.exists():
        raise CliError(
            f"no database at {default.resolve()}",
            hint="run `edgefleet db upgrade` first, or set EDGEFLEET_DATA_DIR to the server's",
        )


def _require_schema(engine: Engine) -> None:
    current, head = migrate.current_revision(engine), migrate.head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        raise CliError(
            f"database {where} is at schema revision {current or 'none'}, "
            f"this edgefleet needs {head}",
            hint="run `edgefleet db upgrade` first",
        )


@contextmanager
def _session() -> Iterator[Session]:
    """A session on the settings' database, which must exist at this version's schema."""
    settings = load_settings()
    _require_database(settings)
    with _database(settings) as engine:
        _require_schema(engine)
        with make_sessionmaker(engine)() as session:
            yield session


@click.command("server", epilog=SETTINGS_HELP, short_help="Run the API server.")
def server() -> None:
    """Run the API server (broker connections, ingest, scheduler) on EDGEFLEET_API_HOST:PORT.

    It upgrades the database schema at start.

    \b
    Example:
      EDGEFLEET_PROFILE=dev edgefleet server
    """
    settings = load_settings()
    from edgefleet.server.app import create_app  # FastAPI and every service: only here

    wiring().serve(create_app(settings), settings.api_host, settings.api_port)


@click.group("db", epilog=SETTINGS_HELP, short_help="Upgrade the database schema (local).")
def db() -> None:
    """The server's database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to this version's head; a no-op when it is there.

    \b
    Example:
      EDGEFLEET_DATABASE_URL=postgresql+psycopg://edgefleet@db/edgefleet edgefleet db upgrade
    """
    settings = load_settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _database(settings) as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    where = _redacted(settings.effective_database_url)
    if before == after:
        click.echo(f"database {where} is at head {after}; nothing to do")
    else:
        click.echo(f"database {where} upgraded from {before or 'empty'} to {after} (head)")


@click.group("tokens", epilog=SETTINGS_HELP, short_help="Create and revoke API tokens (local).")
def tokens() -> None:
    """API tokens, written straight to the database (how the first admin token is made)."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="viewer reads; operator also changes the fleet; admin also manages tokens via the API.",
)
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Default: never expires.")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its secret as JSON.")
def create_token(name: str, role: str, expires_in_days: int | None, as_json: bool) -> None:
    """Create an API token and print its secret, once.

    Only the secret goes to stdout, so `TOKEN=$(edgefleet tokens create ...)`
    captures it; the server keeps only its hash.

    \b
    Example:
      edgefleet tokens create alice --role admin --expires-in-days 90
    """
    now = wiring().clock()
    expires_at = None if expires_in_days is None else now + expires_in_days * DAY
    with _session() as session:
        token, secret = token_service.create_token(
            session=session,
            name=name,
            role=Role(role),
            actor=_local_actor(),
            now=now,
            expires_at=expires_at,
        )
        session.commit()
    if as_json:
        print_json(
            {
                "name": token.name,
                "role": token.role,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "token": secret,
            }
        )
    else:
        click.echo(secret)
    click.echo(
        f"created token {token.name!r} (role {token.role}, expires {when(token.expires_at)}). "
        "Store the secret now: it is shown only once and cannot be recovered.",
        err=True,
    )


@tokens.command("revoke")
@click.argument("name")
def revoke_token(name: str) -> None:
    """Revoke an API token; the API refuses it from the next request on.

    \b
    Example:
      edgefleet tokens revoke alice
    """
    now = wiring().clock()
    with _session() as session:
        token, revoked_now = token_service.revoke_token(
            session=session, name=name, actor=_local_actor(), now=now
        )
        session.commit()
    if revoked_now:
        click.echo(f"revoked token {token.name!r}")
    else:
        click.echo(f"token {token.name!r} was already revoked at {when(token.revoked_at)}")
