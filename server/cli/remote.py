"""What every command over the REST API shares: ``--url``, ``--token``, ``--json``, the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from edgefleet.server.cli.client import ApiClient
from edgefleet.server.cli.connection import DEFAULT_URL, TOKEN_ENV, URL_ENV, resolve
from edgefleet.server.cli.wiring import wiring

F = TypeVar("F", bound=Callable[..., Any])

_URL = "edgefleet.url"
_TOKEN = "edgefleet.token"  # noqa: S105 - a context key, not a secret

CONNECTION_HELP = f"""
The API's URL and token come from --url / --token, else {URL_ENV} /
{TOKEN_ENV}, else `url` / `token` in ~/.config/edgefleet/cli.toml (or
$EDGEFLEET_CLI_CONFIG); the URL defaults to http://127.0.0.1:8080.
"""


def _keep(key: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        ctx.meta[key] = value

    return callback


def connection_options(command: F) -> F:
    """``--url`` and ``--token``, read by :func:`open_api` rather than passed to the command."""
    command = click.option(
        "--token",
        envvar=TOKEN_ENV,
        expose_value=False,
        callback=_keep(_TOKEN),
        metavar="TOKEN",
        help=f"API token; else ${TOKEN_ENV}, else `token` in ~/.config/edgefleet/cli.toml.",
    )(command)
    return click.option(
        "--url",
        envvar=URL_ENV,
        expose_value=False,
        callback=_keep(_URL),
        metavar="URL",
        help=f"API base URL; else ${URL_ENV}, else `url` in ~/.config/edgefleet/cli.toml, "
        f"else {DEFAULT_URL}.",
    )(command)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's JSON unchanged, for scripts."
)


def open_api() -> ApiClient:
    """A client for the current command; its HTTP connection closes when the command ends."""
    ctx = click.get_current_context()
    connection = resolve(ctx.meta.get(_URL), ctx.meta.get(_TOKEN))
    http = ctx.with_resource(wiring().open_http(connection.url))
    return ApiClient(http, connection)
