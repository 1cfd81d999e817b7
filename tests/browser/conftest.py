"""A real server over real HTTP, a seeded fleet, and headless Chromium driving the dashboard.

The server runs under uvicorn on a thread of this process (so tests can reach its
services), with the real broker and a SQLite file; the fleet comes from
:mod:`tests.server.api.fleet_seed` (provisioned through the API, talking MQTT).
Chromium is Debian's package, found on the PATH and driven by Playwright;
nothing is downloaded. Screenshots land in ``test-output/browser/``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from edgefleet.server.app import create_app
from edgefleet.server.db.models import Role
from edgefleet.server.services import Services
from edgefleet.server.tokens import create_token
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import REPO, server_settings, unique_id
from tests.server.api.fleet_seed import SeededFleet, seed_fleet

SHOTS = REPO / "test-output" / "browser"
START_SECONDS = 30.0
SignIn = Callable[..., Page]
NewContext = Callable[..., BrowserContext]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in item.nodeid:
            item.add_marker(pytest.mark.browser)


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    tokens: dict[Role, str]
    fleet: SeededFleet
    http: httpx.Client

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def api(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"/api/v1{path}", headers=self.headers(), params=params)
        response.raise_for_status()
        return response.json()

    def new_token(self, role: Role, expires_at: float | None = None) -> tuple[str, str]:
        """(name, secret) of a token of this test's own, to revoke or let expire."""
        name = unique_id(role.value)
        with self.services.sessions() as session:
            _, secret = create_token(
                session=session,
                name=name,
                role=role,
                actor="test",
                now=time.time(),
                expires_at=expires_at,
            )
            session.commit()
        return name, secret

    def wait_ingested(self) -> None:
        assert self.app.state.runtime.ingest.wait_idle(10)


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def live_server(
    broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("browser")
    app = create_app(server_settings(broker, f"sqlite:///{data / 'edgefleet.db'}", data / "data"))
    server, thread, url = _serve(app)
    try:
        services: Services = app.state.services
        tokens = {}
        with services.sessions() as session:
            for role in Role:
                _, tokens[role] = create_token(
                    session=session,
                    name=f"ui-{role.value}",
                    role=role,
                    actor="test",
                    now=time.time(),
                )
            session.commit()
        with httpx.Client(base_url=url, timeout=10) as http:
            live = LiveServer(url=url, app=app, tokens=tokens, fleet=SeededFleet(""), http=http)
            live.fleet = seed_fleet(http, live.headers(), services.sessions, live.wait_ingested)
            try:
                yield live
            finally:
                live.fleet.close()
    finally:
        server.should_exit = True
        thread.join(START_SECONDS)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is missing: `bash deploy/bootstrap.sh dev` installs it (apt)")
    playwright: Playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_context(live_server: LiveServer, chromium: Browser) -> Iterator[NewContext]:
    """``new_context(viewport=...)``: a fresh browser profile on the live server, closed
    after the test; an uncaught script error on any of its pages fails the test."""
    opened: list[BrowserContext] = []
    script_errors: list[str] = []

    def record(page: Page) -> None:
        page.on("pageerror", lambda error: script_errors.append(str(error)))

    def open_context(viewport: ViewportSize | None = None) -> BrowserContext:
        context = chromium.new_context(
            base_url=live_server.url, viewport=viewport or {"width": 1366, "height": 900}
        )
        context.on("page", record)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()
    assert script_errors == []


@pytest.fixture
def sign_in(live_server: LiveServer, new_context: NewContext) -> SignIn:
    """``sign_in(role)`` or ``sign_in(secret=...)``: a page signed in on the Fleet page;
    ``live=False`` cuts its live-update stream, so only the page's own calls see the API."""

    def open_page(
        role: Role = Role.OPERATOR,
        *,
        secret: str | None = None,
        viewport: ViewportSize | None = None,
        live: bool = True,
    ) -> Page:
        page = new_context(viewport).new_page()
        if not live:
            page.route("**/api/v1/events/stream", lambda route: route.abort())
        page.goto("/ui/")
        page.fill("#token", secret or live_server.tokens[role])
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready=true]")
        return page

    return open_page


def screenshot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
