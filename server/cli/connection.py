"""Where the API is and which token to show it: flags, environment, config file, default.

Precedence, first found wins, for the URL and the token separately:

1. ``--url`` / ``--token``
2. ``EDGEFLEET_URL`` / ``EDGEFLEET_TOKEN``
3. ``url`` / ``token`` in the config file: ``$EDGEFLEET_CLI_CONFIG``, else
   ``$XDG_CONFIG_HOME/edgefleet/cli.toml``, else ``~/.config/edgefleet/cli.toml``
4. the URL ``http://127.0.0.1:8080``; no token
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click

from edgefleet.server.cli.errors import CliError

DEFAULT_URL = "http://127.0.0.1:8080"
CONFIG_ENV = "EDGEFLEET_CLI_CONFIG"
URL_ENV = "EDGEFLEET_URL"
TOKEN_ENV = "EDGEFLEET_TOKEN"  # noqa: S105 - the variable's name, not a secret
CONFIG_KEYS = frozenset({"url", "token"})


@dataclass(frozen=True, slots=True)
class Connection:
    url: str
    token: str | None
    config_file: Path
    """Named in hints, whether or not it exists."""


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "edgefleet" / "cli.toml"


def read_config(path: Path) -> dict[str, str]:
    """The file's ``url`` and ``token``; empty when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"cannot read config file {path}: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CliError(f"config file {path} is not valid TOML: {err}") from err
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise CliError(f"config file {path}: unknown keys {unknown}; it may hold url and token")
    if not all(isinstance(v, str) for v in data.values()):
        raise CliError(f"config file {path}: url and token must be strings")
    if "token" in data and mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(
            f"warning: {path} holds a token and others may read it (chmod 600 {path})", err=True
        )
    return data


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.UsageError(
            f"API URL {url!r} is not http(s)://host[:port] "
            f"(from --url, {URL_ENV} or the config file)"
        )
    return url.rstrip("/")


def resolve(url: str | None, token: str | None) -> Connection:
    """Fill what ``--url``/``--token`` (Click already read their variables) left open."""
    path = config_path()
    config = read_config(path) if url is None or token is None else {}
    return Connection(
        url=_checked_url(url or config.get("url") or DEFAULT_URL),
        token=token or config.get("token") or None,
        config_file=path,
    )
