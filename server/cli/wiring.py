"""The CLI's shell: what it talks to, swappable in tests.

The root command puts a :class:`Wiring` in Click's context object; commands
take their HTTP client, server runner and clock from it. Tests pass their
own (the app's ``TestClient``, a runner that starts the app in-process)
with ``CliRunner.invoke(cli, args, obj=Wiring(...))``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import click

if TYPE_CHECKING:
    from fastapi import FastAPI

CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 60.0
"""Generous: a model upload sends the whole .tflite and the server signs it."""


class HttpResponse(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


class HttpClient(Protocol):
    """The part of ``httpx.Client`` the CLI uses; Starlette's ``TestClient`` has it too."""

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse: ...


HttpFactory = Callable[[str], AbstractContextManager[HttpClient]]
"""Base URL -> a client to use (and close) for one command."""

Serve = Callable[["FastAPI", str, int], None]


def open_httpx(base_url: str) -> AbstractContextManager[HttpClient]:
    import httpx

    timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)
    return httpx.Client(base_url=base_url, timeout=timeout)


def run_uvicorn(app: FastAPI, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port)


@dataclass(frozen=True, slots=True)
class Wiring:
    open_http: HttpFactory = open_httpx
    serve: Serve = run_uvicorn
    clock: Callable[[], float] = time.time


def wiring() -> Wiring:
    found = click.get_current_context().find_object(Wiring)
    return found if found is not None else Wiring()
