"""The ``edgefleet`` command group and the console script's ``main``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from edgefleet.server.cli import (
    audit,
    broker,
    datasets,
    demo,
    devices,
    drift,
    groups,
    keys,
    local,
    models,
    retraining,
    rollouts,
    samples,
    sim,
    training,
)
from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.wiring import Wiring
from edgefleet.shared import __version__
from edgefleet.shared.errors import EdgefleetError

EPILOG = """\b
Local commands (server, db, tokens, keys) run on the server host and read
its EDGEFLEET_* settings. The others call the REST API: its URL and token
come from --url / --token, else EDGEFLEET_URL / EDGEFLEET_TOKEN, else
url / token in ~/.config/edgefleet/cli.toml (or $EDGEFLEET_CLI_CONFIG);
the URL defaults to http://127.0.0.1:8080.

\b
Exit codes: 0 ok, 1 refused (the API or a service said no), 2 usage,
3 API unreachable, 4 no token or token refused.

\b
First steps:
  edgefleet keys init && edgefleet db upgrade
  export EDGEFLEET_TOKEN=$(edgefleet tokens create admin --role admin)
  edgefleet server &
  edgefleet devices provision cam-001 --profile rpi4 --output cam-001.toml
"""


class _Root(click.Group):
    """Turns the services' expected errors into one ``error:`` line, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgefleetError as err:
            raise CliError(str(err)) from err
        except OSError as err:
            if err.filename is None:  # not a file the operator named or owns: a bug, show it
                raise
            raise CliError(f"{err.filename}: {err.strerror}") from err


@click.group(cls=_Root, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgefleet", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate an edgefleet: run the server, manage keys, tokens, devices, groups and models."""
    ctx.ensure_object(Wiring)


for command in (
    local.server,
    local.db,
    local.tokens,
    keys.keys,
    broker.broker,
    devices.devices,
    groups.groups,
    models.models,
    audit.audit,
    datasets.datasets,
    training.train,
    training.jobs,
    rollouts.rollout,
    retraining.retraining,
    samples.samples,
    drift.drift,
    sim.sim,
    demo.demo,
):
    cli.add_command(command)
models.models.add_command(training.compare)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run ``edgefleet`` and return its exit code (Click always exits)."""
    try:
        cli.main(args=None if argv is None else list(argv), prog_name="edgefleet")
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
