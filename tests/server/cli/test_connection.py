"""URL and token precedence, and every way a request can fail, on httpx with a mock transport.

Plus one real connection: a closed loopback port must give exit code 3.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from edgefleet.server.cli import ExitCode, Wiring
from edgefleet.server.cli.wiring import HttpClient
from tests.server.cli.conftest import Cli, isolated_env

Handler = Callable[[httpx.Request], httpx.Response]
EMPTY_PAGE = {"items": [], "total": 0, "limit": 100, "offset": 0}


class Recorder:
    """An ``open_http`` over httpx.MockTransport that keeps what was asked of it."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler or (lambda _r: httpx.Response(200, json=EMPTY_PAGE))

    def __call__(self, base_url: str) -> AbstractContextManager[HttpClient]:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.handler(request)

        return httpx.Client(base_url=base_url, transport=httpx.MockTransport(handle))

    @property
    def seen(self) -> tuple[str, str | None]:
        (request,) = self.requests
        return str(request.url), request.headers.get("Authorization")


def cli_with(tmp_path: Path, recorder: Recorder, **env: str | None) -> Cli:
    return Cli(isolated_env(tmp_path, **env), Wiring(open_http=recorder))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text('url = "http://from-file:1"\ntoken = "file-token"\n')
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("flags", "env", "use_file", "url", "token"),
    [
        ([], {}, False, "http://127.0.0.1:8080", None),
        ([], {}, True, "http://from-file:1", "file-token"),
        ([], {"EDGEFLEET_TOKEN": "env-token"}, True, "http://from-file:1", "env-token"),
        ([], {"EDGEFLEET_URL": "http://from-env:2/"}, True, "http://from-env:2", "file-token"),
        (
            ["--url", "http://flag:3", "--token", "flag-token"],
            {"EDGEFLEET_URL": "http://from-env:2", "EDGEFLEET_TOKEN": "env-token"},
            True,
            "http://flag:3",
            "flag-token",
        ),
    ],
)
def test_flags_then_environment_then_config_file_then_default(
    tmp_path: Path,
    config_file: Path,
    flags: list[str],
    env: dict[str, str],
    use_file: bool,
    url: str,
    token: str | None,
) -> None:
    recorder = Recorder()
    cli = cli_with(tmp_path, recorder, **env)
    if use_file:
        cli.env["EDGEFLEET_CLI_CONFIG"] = str(config_file)
    if token is None:
        assert cli.fails(ExitCode.AUTH, "devices", "list", *flags).stderr.startswith(
            "error: no API token"
        )
        assert recorder.requests == []
        return
    cli.ok("devices", "list", *flags)
    assert recorder.seen == (f"{url}/api/v1/devices?limit=100&offset=0", f"Bearer {token}")


def test_config_file_under_xdg_config_home(tmp_path: Path) -> None:
    (tmp_path / "xdg" / "edgefleet").mkdir(parents=True)
    (tmp_path / "xdg" / "edgefleet" / "cli.toml").write_text('token = "xdg"\n')
    recorder = answer(200, [])
    cli = cli_with(
        tmp_path, recorder, EDGEFLEET_CLI_CONFIG=None, XDG_CONFIG_HOME=str(tmp_path / "xdg")
    )
    result = cli.ok("groups", "list")
    assert recorder.seen == ("http://127.0.0.1:8080/api/v1/groups", "Bearer xdg")
    assert "others may read it" in result.stderr  # written with the default umask


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("url = ", "not valid TOML"),
        ('tokne = "x"', "unknown keys ['tokne']"),
        ("token = 5", "must be strings"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "cli.toml"
    path.write_text(text)
    result = cli_with(tmp_path, Recorder(), EDGEFLEET_CLI_CONFIG=str(path)).fails(
        1, "models", "list"
    )
    assert result.stderr.startswith(f"error: config file {path}")
    assert problem in result.stderr


def test_a_url_without_scheme_is_a_usage_error(tmp_path: Path) -> None:
    result = cli_with(tmp_path, Recorder(), EDGEFLEET_TOKEN="t").fails(
        2, "models", "list", "--url", "localhost:8080"
    )
    assert "is not http(s)://host[:port]" in result.stderr


def test_a_token_with_a_newline_is_refused_before_sending(tmp_path: Path) -> None:
    recorder = Recorder()
    cli_with(tmp_path, recorder, EDGEFLEET_TOKEN="eft_abc\n").fails(4, "models", "list")
    assert recorder.requests == []


def answer(status: int, body: object = None, text: str | None = None) -> Recorder:
    def handler(_request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    return Recorder(handler)


@pytest.mark.parametrize(
    ("recorder", "code", "error", "hint"),
    [
        (
            answer(401, {"error": "unauthenticated", "detail": "unknown token"}),
            4,
            "unknown token",
            "EDGEFLEET_TOKEN",
        ),
        (
            answer(403, {"error": "forbidden", "detail": "token 'v' has role 'viewer'"}),
            4,
            "token 'v' has role 'viewer'",
            "higher role",
        ),
        (answer(404, {"error": "not_found", "detail": "no model 'x'"}), 1, "no model 'x'", None),
        (
            answer(
                422,
                {
                    "error": "invalid_request",
                    "detail": [{"field": "query.limit", "problem": "too big"}],
                },
            ),
            1,
            "query.limit: too big",
            None,
        ),
        (
            answer(502, text="<html>\n<h1>Bad Gateway</h1></html>"),
            1,
            "HTTP 502: <html> <h1>Bad Gateway</h1></html>",
            None,
        ),
        (answer(200, text="hello"), 1, "answered HTTP 200 without JSON", None),
    ],
)
def test_api_errors_become_one_line_and_an_exit_code(
    tmp_path: Path, recorder: Recorder, code: int, error: str, hint: str | None
) -> None:
    result = cli_with(tmp_path, recorder, EDGEFLEET_TOKEN="t").fails(code, "models", "show", "x")
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: ")
    assert error in first
    assert rest == ([] if hint is None else [next(r for r in rest if hint in r)])
    assert result.stdout == ""


def test_a_timeout_is_reported_as_unreachable(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    result = cli_with(tmp_path, Recorder(handler), EDGEFLEET_TOKEN="t").fails(3, "audit", "list")
    assert "did not answer in time (ReadTimeout)" in result.stderr


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_closed_port_gives_exit_3_with_a_hint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    cli = Cli(isolated_env(tmp_path, EDGEFLEET_URL=url, EDGEFLEET_TOKEN="t"))  # real httpx
    result = cli.fails(3, "devices", "list", "--json")
    assert result.stderr.startswith(f"error: cannot reach the API at {url}")
    assert "hint: start it with `edgefleet server`" in result.stderr
    assert "EDGEFLEET_URL" in result.stderr


def test_ids_cannot_escape_their_path_segment(tmp_path: Path) -> None:
    recorder = answer(404, {"error": "not_found", "detail": "no device"})
    cli_with(tmp_path, recorder, EDGEFLEET_TOKEN="t").fails(1, "devices", "show", "../tokens")
    assert recorder.requests[0].url.raw_path == b"/api/v1/devices/..%2Ftokens"


def test_json_output_is_the_api_body(tmp_path: Path) -> None:
    body = [{"name": "m", "description": "", "created_at": 0.0, "versions": [], "latest": None}]
    result = cli_with(tmp_path, answer(200, body), EDGEFLEET_TOKEN="t").ok(
        "models", "list", "--json"
    )
    assert json.loads(result.stdout) == body
