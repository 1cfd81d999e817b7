"""The one place domain errors become HTTP responses: ``{"error": reason, "detail": text}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet.server.errors import AuthenticationError, ServerError
from edgefleet.shared.errors import EdgefleetError

_HTTP_REASONS = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def _body(reason: str, detail: object) -> dict[str, object]:
    return {"error": reason, "detail": detail}


def install(app: FastAPI) -> None:
    @app.exception_handler(EdgefleetError)
    async def domain_error(_request: Request, exc: EdgefleetError) -> JSONResponse:
        # Shared errors (a malformed manifest, an untrusted signature) are the caller's input.
        status = exc.status_code if isinstance(exc, ServerError) else 422
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
        return JSONResponse(_body(exc.reason, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in error.get("loc", ())), "problem": error.get("msg")}
            for error in exc.errors()
        ]
        return JSONResponse(_body("invalid_request", problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = _HTTP_REASONS.get(exc.status_code, "http_error")
        return JSONResponse(
            _body(reason, exc.detail), status_code=exc.status_code, headers=exc.headers
        )
