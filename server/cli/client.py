"""The REST API seen from the CLI: bearer token in, parsed JSON or a :class:`CliError` out.

All of the API's error bodies (``{"error": reason, "detail": ...}``) and
httpx's transport errors become exit codes here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from edgefleet.server.cli.connection import TOKEN_ENV, URL_ENV, Connection
from edgefleet.server.cli.errors import AuthError, CliError, UnreachableError
from edgefleet.server.cli.wiring import HttpClient, HttpResponse

API_PREFIX = "/api/v1"
MAX_BODY_ECHO = 200


def segment(value: str) -> str:
    """``value`` as one path segment: an id with a ``/`` in it cannot reach another route."""
    return quote(value, safe="")


def _detail(response: HttpResponse) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # request validation: [{"field", "problem"}, ...]
            return "; ".join(
                f"{p.get('field')}: {p.get('problem')}" if isinstance(p, dict) else str(p)
                for p in detail
            )
        return str(detail)
    text = " ".join(response.text.split())[:MAX_BODY_ECHO]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


class ApiClient:
    def __init__(self, http: HttpClient, connection: Connection) -> None:
        if connection.token is None:
            raise AuthError(
                "no API token",
                hint=(
                    f'pass --token, set {TOKEN_ENV}, or put token = "..." in '
                    f"{connection.config_file}; on the server host, "
                    "`edgefleet tokens create NAME --role operator` makes one"
                ),
            )
        if not connection.token.isprintable() or " " in connection.token:
            raise AuthError(
                "the API token holds spaces or control characters",
                hint="copy it again from the `edgefleet tokens create` output",
            )
        self._http = http
        self._connection = connection
        self._headers = {"Authorization": f"Bearer {connection.token}"}

    def get(self, path: str, *, params: Mapping[str, str | int | None] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._request("GET", path, params=query)

    def post(
        self,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Any:
        return self._request("POST", path, json=json, data=data, files=files)

    def patch(self, path: str, *, json: Any) -> Any:
        return self._request("PATCH", path, json=json)

    def put(self, path: str, *, json: Any) -> Any:
        return self._request("PUT", path, json=json)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    def download(
        self, path: str, *, params: Mapping[str, str | int | None] | None = None
    ) -> HttpResponse:
        """A GET that answers with a file, not JSON: the checked response, body and headers."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._checked(self._send("GET", path, params=query))

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._parsed(self._checked(self._send(method, path, **kwargs)))

    def _send(self, method: str, path: str, **kwargs: Any) -> HttpResponse:
        url = self._connection.url
        try:
            response = self._http.request(
                method, API_PREFIX + path, headers=self._headers, **kwargs
            )
        except httpx.TimeoutException as err:
            raise UnreachableError(
                f"the API at {url} did not answer in time ({type(err).__name__})",
                hint="is the server overloaded, or is a proxy between you holding the request?",
            ) from err
        except httpx.TransportError as err:
            raise UnreachableError(
                f"cannot reach the API at {url}: {err}",
                hint=f"start it with `edgefleet server`, or point --url / {URL_ENV} at it",
            ) from err
        return response

    def _checked(self, response: HttpResponse) -> HttpResponse:
        status = response.status_code
        if status == 401:
            raise AuthError(
                _detail(response),
                hint=f"the API refused the token: check --token / {TOKEN_ENV} "
                f"(revoked and expired tokens stop working)",
            )
        if status == 403:
            raise AuthError(_detail(response), hint="ask an admin for a token with a higher role")
        if status >= 400:
            raise CliError(_detail(response))
        return response

    def _parsed(self, response: HttpResponse) -> Any:
        status = response.status_code
        if status == 204:
            return None
        try:
            return response.json()
        except ValueError as err:
            raise CliError(
                f"{self._connection.url} answered HTTP {status} without JSON: "
                "is that URL an edgefleet server?"
            ) from err
