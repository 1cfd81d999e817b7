"""Signing in and out, and sessions that end, in Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from edgefleet.server import tokens
from edgefleet.server.db.models import Role
from tests.browser.conftest import LiveServer, NewContext, SignIn, screenshot


def test_bad_token_shows_why_and_a_good_one_opens_the_fleet(
    live_server: LiveServer, new_context: NewContext
) -> None:
    page = new_context().new_page()
    page.goto("/ui/rollouts")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/rollouts$"))
    page.fill("#token", "eft_wrong")
    page.click("button[type=submit]")
    expect(page.locator("#token-error")).to_have_text("unknown token")
    expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "sign-in-refused")
    page.fill("#token", live_server.tokens[Role.VIEWER])
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/rollouts$"))
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Rollouts")
    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/$"))


def revoke(live_server: LiveServer, name: str) -> None:
    with live_server.services.sessions() as session:
        tokens.revoke_token(session=session, name=name, actor="test", now=0.0)
        session.commit()


def sign_in_again(live_server: LiveServer, page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=%2Fui%2F"))
    page.fill("#token", live_server.tokens[Role.OPERATOR])
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")


def test_a_form_submitted_after_revocation_survives_the_sign_in(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    name, secret = live_server.new_token(Role.OPERATOR)
    page = sign_in(secret=secret, live=False)
    group = f"{live_server.fleet.prefix}-kept"
    page.fill("#group-name", group)
    page.fill("#group-description", "made after signing in again")
    revoke(live_server, name)
    page.click("#save-group button[type=submit]")
    sign_in_again(live_server, page)
    expect(page.locator("#group-name")).to_have_value(group)
    expect(page.locator("#group-description")).to_have_value("made after signing in again")
    # Restored, not resent: a change waits for the operator to press the button again.
    assert (
        live_server.http.get(f"/api/v1/groups/{group}", headers=live_server.headers()).status_code
        == 404
    )
    page.click("#save-group button[type=submit]")
    expect(page.locator("#save-group .form-status")).to_contain_text(f"Group {group} saved")


def test_the_live_stream_notices_an_ended_session_and_keeps_the_filter(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    name, secret = live_server.new_token(Role.OPERATOR)
    page = sign_in(secret=secret)
    page.select_option("#fleet-filter select[name=state]", "offline")
    page.check("#fleet-filter input[name=problems_only]")
    revoke(live_server, name)
    sign_in_again(live_server, page)
    expect(page.locator("#fleet-filter select[name=state]")).to_have_value("offline")
    expect(page.locator("#fleet-filter input[name=problems_only]")).to_be_checked()
    page.click("#fleet-filter button[type=submit]")
    expected = live_server.api("/fleet/devices", state="offline", problems_only=True)
    expect(page.locator("#devices tbody tr")).to_have_count(expected["total"])
