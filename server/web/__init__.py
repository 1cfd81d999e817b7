"""The operator dashboard: pages under ``/ui``, our own scripts and styles under
``/ui/static``, no third-party front-end code and nothing fetched from the internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from edgefleet.server.web.pages import router
from edgefleet.server.web.session_cookie import HOME

STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["STATIC_DIR", "mount"]


def mount(app: FastAPI) -> None:
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(HOME, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
