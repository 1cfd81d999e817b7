"""Every page of the nav, walked by keyboard at laptop and tablet widths: each loads without
a script error, names every control, and is saved as a screenshot; a viewer who presses
every button a page shows sends no change to the API."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, ViewportSize, expect

from edgefleet.server.db.models import Role
from edgefleet.server.web.pages import NAV
from tests.browser.conftest import LiveServer, SignIn, screenshot

VIEWPORTS: dict[str, ViewportSize] = {
    "laptop": {"width": 1366, "height": 900},
    "tablet": {"width": 820, "height": 1180},
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
UNNAMED_CONTROLS = """() => [...document.querySelectorAll(
    'main input, main select, main textarea, main button')]
  .filter((el) => el.type !== 'hidden' && el.getClientRects().length > 0)
  .filter((el) => !(el.labels?.length || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim())))
  .map((el) => el.outerHTML.slice(0, 120))"""


def follow_nav(page: Page, label: str) -> None:
    """Reach the nav link with the keyboard and follow it with Enter."""
    link = page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True)
    link.focus()
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text(label)
    page.wait_for_selector("body[data-ready=true]")


@pytest.mark.parametrize("width", sorted(VIEWPORTS))
def test_every_page_loads_names_its_controls_and_is_saved(
    live_server: LiveServer, sign_in: SignIn, width: str
) -> None:
    page = sign_in(Role.OPERATOR, viewport=VIEWPORTS[width])
    assert page.locator("a.skip, a[href='#main']").count() == 1
    for key, label, href in NAV:
        follow_nav(page, label)
        assert urlsplit(page.url).path == href
        expect(page.locator('nav [aria-current="page"]')).to_have_text(label)
        assert page.locator("h1").count() == 1
        assert page.evaluate(UNNAMED_CONTROLS) == [], f"unnamed controls on {key}"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{key} scrolls sideways by {overflow}px at {width} width"
        screenshot(page, f"walk-{key}-{width}")


def test_a_viewer_pressing_every_button_changes_nothing(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    page = sign_in(Role.VIEWER, live=False)
    changes: list[str] = []

    def record(request: Request) -> None:
        if request.method in UNSAFE and "/api/v1/" in request.url:
            changes.append(f"{request.method} {request.url}")

    page.on("request", record)
    page.on("dialog", lambda dialog: dialog.accept())
    pressed = 0
    for key, label, href in NAV:
        follow_nav(page, label)
        buttons = page.locator("main button:visible")
        for index in range(buttons.count()):
            button = buttons.nth(index)
            if not button.is_enabled():
                continue
            button.click()
            pressed += 1
            page.wait_for_load_state()
            if urlsplit(page.url).path != href:
                page.goto(href)
                page.wait_for_selector("body[data-ready=true]")
                buttons = page.locator("main button:visible")
        assert changes == [], f"{key}: a viewer's button sent {changes}"
    assert pressed >= len(NAV)
