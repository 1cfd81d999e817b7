"""A throwaway PostgreSQL cluster, or a server you already run.

By default :meth:`PostgresCluster.start` runs ``initdb`` into a temporary
directory and starts it with ``pg_ctl`` on a free loopback port, tuned for
tests (no fsync: the data dies with the run anyway), and trusting only
connections from this machine.

Set ``EDGEFLEET_TEST_POSTGRES_URL`` to a SQLAlchemy URL of an existing server
instead (for example ``postgresql+psycopg://postgres@db:5432/postgres`` in CI,
where a service container is quicker than initdb). Its user must be allowed to
create databases; each test gets its own, dropped again afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tests.harness._system import Service, ServiceAccount, free_loopback_port, write_private

ENV_URL = "EDGEFLEET_TEST_POSTGRES_URL"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
TIMEOUT = 30
"""Seconds for initdb and for pg_ctl's own bounded waits; a local start takes about one."""

_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or the cluster did not start or stop."""


class PostgresCluster(Service):
    """Hands out one fresh database per caller on a single server.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, external_url: str | None = None) -> None:
        self._external = make_url(external_url) if external_url else None
        self._account = None if self._external else ServiceAccount.for_root(SUPERUSER)
        self._dir: Path | None = None
        self._bindir: Path | None = None
        self._admin: Engine | None = None
        self._created: set[str] = set()
        self.port = 0

    @classmethod
    def from_environment(cls) -> PostgresCluster:
        """Use ``$EDGEFLEET_TEST_POSTGRES_URL`` if set, else a cluster of our own."""
        return cls(external_url=os.environ.get(ENV_URL) or None)

    @property
    def log_path(self) -> Path | None:
        return None if self._dir is None else self._dir / "postgres.log"

    def start(self) -> Self:
        try:
            if self._external is not None:
                self._admin = _admin_engine(self._external)
            else:
                self._start_local()
            with self._require_admin().connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as err:
            message = f"PostgreSQL is not answering: {err}{self._log_tail()}"
            self.stop()
            raise PostgresError(message) from err
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        """Create an empty database; return its SQLAlchemy URL (psycopg 3 driver)."""
        if _DB_NAME.fullmatch(name) is None:
            raise ValueError(f"invalid database name {name!r}")
        with self._require_admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.add(name)
        return self._url(name).render_as_string(hide_password=False)

    def drop_database(self, name: str) -> None:
        """Drop a database from :meth:`create_database`, closing sessions still open on it."""
        if name not in self._created:
            raise KeyError(name)
        with self._require_admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._created.discard(name)

    def stop(self) -> None:
        if self._external is not None and self._admin is not None:
            # Not our server: leave it as we found it.
            for name in sorted(self._created):
                self.drop_database(name)
        if self._admin is not None:
            self._admin.dispose()
            self._admin = None
        if self._dir is not None:
            try:
                if (self._dir / "data" / "postmaster.pid").exists():
                    # Immediate: nothing here is worth a checkpoint.
                    self._run(
                        "pg_ctl", "-D", "data", "-m", "immediate", "-w", "-t", str(TIMEOUT), "stop"
                    )
            finally:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _start_local(self) -> None:
        self._bindir = find_bindir()
        self._dir = Path(tempfile.mkdtemp(prefix="edgefleet-postgres-"))
        if self._account is not None:
            self._account.give(self._dir)
        self.port = free_loopback_port()
        self._run("initdb", "-D", "data", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync")
        settings = {
            **_TEST_SETTINGS,
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            # Socket in our own directory: no clash with a system server in /run/postgresql.
            "unix_socket_directories": f"'{self._dir}'",
        }
        with (self._dir / "data" / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        write_private(
            self._dir / "data" / "pg_hba.conf",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            self._account,
        )
        self._run("pg_ctl", "-D", "data", "-l", "postgres.log", "-w", "-t", str(TIMEOUT), "start")
        self._admin = _admin_engine(self._url(SUPERUSER))

    def _url(self, database: str) -> URL:
        if self._external is not None:
            return self._external.set(database=database)
        return URL.create(
            "postgresql+psycopg", username=SUPERUSER, host=HOST, port=self.port, database=database
        )

    def _run(self, program: str, *args: str) -> None:
        assert self._dir is not None
        assert self._bindir is not None
        account = self._account
        try:
            subprocess.run(
                [str(self._bindir / program), *args],
                # The server's account may not be able to enter our working directory.
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=True,
                timeout=TIMEOUT + 5,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
            )
        except subprocess.CalledProcessError as err:
            raise PostgresError(
                f"{program} failed ({err.returncode}):\n{err.stdout}{err.stderr}{self._log_tail()}"
            ) from err
        except subprocess.TimeoutExpired as err:
            raise PostgresError(f"{program} did not finish in {err.timeout} s") from err

    def _require_admin(self) -> Engine:
        if self._admin is None:
            raise PostgresError("cluster not started")
        return self._admin

    def _log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\npostgres.log:\n" + "\n".join(tail)


def find_bindir() -> Path:
    """Find ``initdb`` and ``pg_ctl``: Debian keeps them off ``PATH``, per major version."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        candidates.append(Path(result.stdout.strip()))
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
        f"(apt-get install postgresql), or point {ENV_URL} at a running server, e.g. "
        f"{ENV_URL}=postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )


def _admin_engine(url: URL) -> Engine:
    # AUTOCOMMIT: CREATE/DROP DATABASE refuse to run in a transaction.
    # NullPool: nothing stays open to block DROP DATABASE or leak a socket.
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
