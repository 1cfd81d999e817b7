"""The dashboard's pages: server-rendered shells whose scripts read the REST API.

A page only says who is signed in (role, CSRF token in ``<meta>`` tags) and
lays out empty regions; every number on it comes from ``/api/v1`` through
``static/js``, so the API and the page cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from edgefleet.server import tokens
from edgefleet.server.api.deps import ServicesDep, SessionDep
from edgefleet.server.db.models import Role
from edgefleet.server.errors import AuthenticationError, PermissionDeniedError
from edgefleet.server.fleet.buckets import choose_step
from edgefleet.server.tokens import Principal
from edgefleet.server.web import sessions as web_sessions
from edgefleet.server.web.session_cookie import (
    COOKIE_NAME,
    HOME,
    SessionClaim,
    check_csrf,
    safe_next,
    same_origin,
    session_expiry,
    sign_session,
)

TEMPLATE_DIR = Path(__file__).parent / "templates"
router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATE_DIR)

NAV = (
    ("fleet", "Fleet", HOME),
    ("devices", "Devices", "/ui/devices"),
    ("models", "Models", "/ui/models"),
    ("rollouts", "Rollouts", "/ui/rollouts"),
    ("drift", "Drift", "/ui/drift"),
    ("audit", "Audit", "/ui/audit"),
)
PLANNED = {key: title for key, title, _ in NAV if key != "fleet"}
CHART_POINTS = 180
CHART_RANGES = ((3_600, "1 hour"), (21_600, "6 hours"), (86_400, "24 hours"), (604_800, "7 days"))
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _render(
    request: Request, template: str, context: dict[str, Any], code: int = status.HTTP_200_OK
) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _signed_in(request: Request, services: ServicesDep, session: SessionDep) -> Principal | None:
    if not web_sessions.has_cookie(request):
        return None
    try:
        principal = web_sessions.cookie_principal(request, session, services.clock())
    except AuthenticationError:
        return None
    session.commit()
    return principal


class _CookieAttributes(TypedDict):
    path: str
    secure: bool
    httponly: bool
    samesite: Literal["strict"]


def _cookie_attributes(request: Request) -> _CookieAttributes:
    """The same on set and on clear, or the browser keeps the old cookie."""
    return {
        "path": "/",
        "secure": request.url.scheme == "https",
        "httponly": True,
        "samesite": "strict",
    }


def _to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        f"/ui/sign-in?next={quote(target, safe='/')}", status_code=status.HTTP_303_SEE_OTHER
    )


def _page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    page: str,
    template: str,
    **context: Any,
) -> Response:
    """The page for whoever is signed in; anyone else goes to sign-in and comes back here."""
    principal = _signed_in(request, services, session)
    if principal is None:
        return _to_sign_in(request)
    return _render(
        request,
        template,
        {
            "page": page,
            "nav": NAV,
            "principal": principal,
            "can_operate": principal.role in (Role.OPERATOR, Role.ADMIN),
            "csrf": web_sessions.page_csrf(request),
            **context,
        },
    )


@router.get("", response_class=RedirectResponse)
def ui_root() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=status.HTTP_308_PERMANENT_REDIRECT)


@router.get("/", response_class=HTMLResponse)
def fleet_page(request: Request, services: ServicesDep, session: SessionDep) -> Response:
    return _page(request, services, session, "fleet", "fleet.html", title="Fleet")


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    device_id: str, request: Request, services: ServicesDep, session: SessionDep
) -> Response:
    """The range choices carry their bucket width, so the server downsamples each chart."""
    return _page(
        request,
        services,
        session,
        "devices",
        "device.html",
        title=device_id,
        device_id=device_id,
        ranges=_chart_ranges(),
    )


def _chart_ranges() -> list[tuple[int, str, float]]:
    return [(span, label, choose_step(0, span, CHART_POINTS)) for span, label in CHART_RANGES]


@router.get("/drift", response_class=HTMLResponse)
def drift_page(request: Request, services: ServicesDep, session: SessionDep) -> Response:
    """Its chart's range choices carry their bucket width, as the device page's do."""
    return _page(
        request, services, session, "drift", "drift.html", title="Drift", ranges=_chart_ranges()
    )


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, services: ServicesDep, session: SessionDep) -> Response:
    """Profiles come from the server's catalog: the provisioning form offers only known ones."""
    return _page(
        request,
        services,
        session,
        "devices",
        "devices.html",
        title="Devices",
        profiles=services.catalog.names(),
    )


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _render(request, "sign_in.html", {"next": safe_next(next), "error": None})


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,
) -> Response:
    target = safe_next(next)
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        return _render(
            request,
            "sign_in.html",
            {"next": target, "error": "this form was sent from another site"},
            status.HTTP_403_FORBIDDEN,
        )
    now = services.clock()
    try:
        found = tokens.authenticate_token(session=session, secret=token.strip(), now=now)
    except AuthenticationError as err:
        return _render(
            request,
            "sign_in.html",
            {"next": target, "error": str(err)},
            status.HTTP_401_UNAUTHORIZED,
        )
    session.commit()
    claim = SessionClaim(
        token_id=found.id, token_name=found.name, expires_at=session_expiry(now, found.expires_at)
    )
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE_NAME,
        sign_session(claim, web_sessions.session_secret(request)),
        max_age=max(1, int(claim.expires_at - now)),
        **_cookie_attributes(request),
    )
    return response


@router.post("/sign-out", response_class=RedirectResponse)
def sign_out(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Clears the cookie; the CSRF token keeps other sites from signing an operator out."""
    if web_sessions.has_cookie(request):
        try:
            check_csrf(
                request.cookies.get(COOKIE_NAME, ""), csrf, web_sessions.session_secret(request)
            )
        except PermissionDeniedError as err:
            return Response(str(err), status_code=status.HTTP_403_FORBIDDEN)
    response = RedirectResponse("/ui/sign-in", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE_NAME, **_cookie_attributes(request))
    return response


def _template(page: str) -> str:
    """A nav page gets its own template once one is written (``page`` is a nav key)."""
    own = f"{page}.html"
    return own if (TEMPLATE_DIR / own).is_file() else "planned.html"


@router.get("/{page}", response_class=HTMLResponse)
def planned_page(
    page: str, request: Request, services: ServicesDep, session: SessionDep
) -> Response:
    """Pages later parts of the dashboard fill in; named in the nav already."""
    if page not in PLANNED:
        return _render(request, "not_found.html", {"nav": NAV}, status.HTTP_404_NOT_FOUND)
    return _page(request, services, session, page, _template(page), title=PLANNED[page])
