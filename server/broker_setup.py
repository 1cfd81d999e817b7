"""A ready-to-run Mosquitto for edgefleet: config, dynamic-security file, server credentials.

``edgefleet broker init DIR`` writes, once:

* ``mosquitto.conf``: one listener, every login checked by the dynamic-security plugin;
* ``dynamic-security.json``: the plugin's initial state with the server's two
  accounts (the admin that provisions devices, the server that ingests);
* ``edgefleet.env``: those accounts' passwords as ``EDGEFLEET_BROKER_*``
  settings, mode 0600, to source before ``edgefleet server``.

Run again, it changes nothing: the broker owns the plugin file after its
first start, and regenerating passwords would lock the server out.
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from edgefleet.server import dynsec
from edgefleet.server.atomic import make_dir, write_atomic
from edgefleet.server.errors import ConfigError
from edgefleet.server.mosquitto import find_dynsec_plugin, render_config
from edgefleet.shared import jsoncodec

CONF = "mosquitto.conf"
DYNSEC = "dynamic-security.json"
ENV = "edgefleet.env"
PERSISTENCE = "data"
"""Where the broker saves sessions, queued and retained messages: it must exist and be the
broker user's, or a restart quietly loses them all."""
PASSWORD_BYTES = 24


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    directory: Path
    created: bool

    @property
    def conf(self) -> Path:
        return self.directory / CONF

    @property
    def env(self) -> Path:
        return self.directory / ENV


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of an env file written by :func:`init_broker`."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def init_broker(
    directory: Path, *, host: str = "127.0.0.1", port: int = 1883, plugin: str | None = None
) -> BrokerFiles:
    directory = directory.resolve()
    present = [name for name in (CONF, DYNSEC, ENV) if (directory / name).exists()]
    if len(present) == 3:
        return BrokerFiles(directory, created=False)
    if present:
        raise ConfigError(
            f"{directory} holds only {', '.join(present)} of a broker setup; move it away "
            "and run `edgefleet broker init` again"
        )
    make_dir(directory, mode=0o700)
    make_dir(directory / PERSISTENCE, mode=0o700)
    admin_password = secrets.token_urlsafe(PASSWORD_BYTES)
    server_password = secrets.token_urlsafe(PASSWORD_BYTES)
    config = dynsec.initial_config(
        admin=dynsec.hash_password(admin_password), server=dynsec.hash_password(server_password)
    )
    write_atomic(directory / DYNSEC, jsoncodec.canonical(config))
    write_atomic(
        directory / CONF,
        render_config(
            host=host,
            port=port,
            plugin_path=plugin or find_dynsec_plugin(),
            dynsec_file=str(directory / DYNSEC),
            log_file=None,
            persistence_dir=str(directory / PERSISTENCE),
        ).encode(),
        mode=0o644,
    )
    env = "\n".join(
        [
            "# Written by `edgefleet broker init`: the server's broker accounts. Keep secret.",
            f"EDGEFLEET_BROKER_HOST={host}",
            f"EDGEFLEET_BROKER_PORT={port}",
            f"EDGEFLEET_BROKER_USERNAME={dynsec.SERVER_USER}",
            f"EDGEFLEET_BROKER_PASSWORD={server_password}",
            f"EDGEFLEET_BROKER_ADMIN_USERNAME={dynsec.ADMIN_USER}",
            f"EDGEFLEET_BROKER_ADMIN_PASSWORD={admin_password}",
            "",
        ]
    )
    write_atomic(directory / ENV, env.encode(), mode=0o600)
    _hand_to_broker_user(directory)
    return BrokerFiles(directory, created=True)


def _hand_to_broker_user(directory: Path, user: str = "mosquitto") -> None:
    """Started as root, mosquitto drops to its own user and then rewrites the plugin file.

    So the folder and the plugin file must be that user's; the env file stays root's.
    """
    if os.geteuid() != 0:
        return
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return
    for path in (directory, directory / PERSISTENCE, directory / DYNSEC, directory / CONF):
        os.chown(path, account.pw_uid, account.pw_gid)
