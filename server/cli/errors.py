"""Exit codes, and the one exception that carries them to the terminal.

Every expected failure ends as a :class:`CliError`: one ``error: ...`` line
on stderr, an optional ``hint: ...`` line, and an exit code a script can
branch on. Nothing expected prints a stack trace::

    click.ClickException
    ├── click.UsageError         2  bad flags or arguments (Click's own)
    └── CliError                 1  the API or a service refused: 4xx, domain errors
        ├── UnreachableError     3  no answer from the API at the URL
        └── AuthError            4  no token, or the API refused it (401, 403)
"""

from __future__ import annotations

from enum import IntEnum
from typing import IO, Any

import click


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    AUTH = 4


class CliError(click.ClickException):
    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", file=file, err=file is None)
        if self.hint:
            click.echo(f"hint: {self.hint}", file=file, err=file is None)


class UnreachableError(CliError):
    exit_code = ExitCode.UNREACHABLE


class AuthError(CliError):
    exit_code = ExitCode.AUTH
