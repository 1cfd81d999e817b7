"""The Fleet page in Chromium: the API's numbers, filters, live updates, roles, CSRF."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from edgefleet.server.db.models import Role
from edgefleet.shared.messages import DeviceStatus
from edgefleet.shared.topics import Channel
from tests.browser.conftest import LiveServer, SignIn, screenshot
from tests.server.api.fleet_seed import PLANS, send, state

STATES = ("online", "offline", "provisioned", "revoked")


def shown_counts(page: Page) -> dict[str, int]:
    return {
        key: int(page.locator(f'[data-count="{key}"]').inner_text())
        for key in ("total", *STATES, "problems")
    }


def api_counts(live: LiveServer) -> dict[str, int]:
    summary: Any = live.api("/fleet/summary")
    return {
        "total": summary["total"],
        **{s: live.api("/devices", state=s)["total"] for s in STATES},
        "problems": summary["devices_with_problems"],
    }


def post_from_page(page: Page, *, csrf: bool) -> dict[str, Any]:
    """A change made with the page's own cookie, as a script on the page would."""
    result: dict[str, Any] = page.evaluate(
        """async (csrf) => {
            const headers = {"Content-Type": "application/json"};
            const token = document.querySelector("meta[name=csrf-token]").content;
            if (csrf) headers["X-CSRF-Token"] = token;
            const response = await fetch("/api/v1/groups", {
                method: "POST", headers, credentials: "same-origin",
                body: JSON.stringify({name: "from-page", kind: "static", members: []}),
            });
            return {status: response.status, body: await response.json()};
        }""",
        csrf,
    )
    return result


def test_numbers_on_the_page_equal_the_api(live_server: LiveServer, sign_in: SignIn) -> None:
    page = sign_in(Role.OPERATOR)
    expect(page.locator('[data-count="total"]')).not_to_have_text("–")
    assert shown_counts(page) == api_counts(live_server)
    versions: Any = live_server.api("/fleet/versions")
    rows = page.locator("#versions tbody tr")
    expect(rows).to_have_count(len(versions))
    for row, version in zip(rows.all(), versions, strict=True):
        assert row.locator("td").all_inner_texts() == [
            version["model"],
            f"v{version['version']}",
            str(version["devices"]),
        ]
    devices: Any = live_server.api("/fleet/devices", limit=50)
    shown = page.locator("#devices tbody tr th").all_inner_texts()
    assert shown == [d["id"] for d in devices["items"]]
    expect(page.locator("#devices-summary")).to_contain_text(f"of {devices['total']} devices")
    expect(page.locator("#presence-chart svg path.series-0")).to_have_count(1)
    screenshot(page, "fleet-operator")
    page.set_viewport_size({"width": 820, "height": 1180})
    screenshot(page, "fleet-tablet")


def test_filter_by_group_and_tag_shows_what_the_api_selects(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    page = sign_in(Role.VIEWER)
    group = live_server.fleet.groups["site-b"]
    page.select_option("#fleet-filter select[name=group]", group)
    page.select_option("#fleet-filter select[name=profile]", "rpi4")
    page.click("#fleet-filter button[type=submit]")
    expected: Any = live_server.api("/fleet/devices", group=group, profile="rpi4")
    ids = [d["id"] for d in expected["items"]]
    assert len(ids) == 3
    rows = page.locator("#devices tbody tr th")
    expect(rows).to_have_text(ids)
    expect(page).to_have_url(re.compile(r"\?group=.+&profile=rpi4$"))
    b1 = live_server.fleet.ids["b1"]
    page.fill("#fleet-filter input[name=search]", b1)
    page.keyboard.press("Enter")
    expect(rows).to_have_text([b1])
    # Other pages' tests on this server may flag b1's drift too: the API says which problems.
    problems = live_server.api("/fleet/devices", search=b1)["items"][0]["problems"]
    assert "rolled_back" in problems
    badges = page.locator("#devices tbody tr .badge")
    expect(badges).to_have_count(len(problems))
    expect(badges.filter(has_text="Rolled back")).to_have_class("badge rolled_back")
    classes = badges.evaluate_all("badges => badges.map((b) => b.classList[1])")
    assert classes == problems


def test_a_device_going_offline_shows_without_reload(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    page = sign_in(Role.VIEWER)
    page.evaluate("window.__notReloaded = true")
    fleet = live_server.fleet
    client = fleet.clients["a1"]
    before = shown_counts(page)
    send(client, fleet.ids["a1"], Channel.STATE, state(DeviceStatus.OFFLINE, 3))
    try:
        expect(page.locator('[data-count="offline"]')).to_have_text(str(before["offline"] + 1))
        expect(page.locator(f'#devices tr[data-device="{fleet.ids["a1"]}"] .badge')).to_have_text(
            "Offline"
        )
        expect(page.locator("#live-status")).to_contain_text("Live")
        assert page.evaluate("window.__notReloaded") is True
        assert shown_counts(page) == api_counts(live_server)
    finally:
        send(client, fleet.ids["a1"], Channel.STATE, state(DeviceStatus.ONLINE, 3))
    expect(page.locator('[data-count="offline"]')).to_have_text(str(before["offline"]))


def test_viewer_sees_no_operator_buttons_and_its_cookie_cannot_change_anything(
    sign_in: SignIn,
) -> None:
    page = sign_in(Role.VIEWER)
    expect(page.locator(".role")).to_have_text("viewer")
    expect(page.locator("#save-group")).to_have_count(0)
    expect(page.locator("[data-operator]")).to_have_count(0)
    refused = post_from_page(page, csrf=True)
    assert refused["status"] == 403
    assert refused["body"]["error"] == "forbidden"
    screenshot(page, "fleet-viewer")


def test_a_change_without_the_csrf_token_is_refused(sign_in: SignIn) -> None:
    page = sign_in(Role.OPERATOR)
    refused = post_from_page(page, csrf=False)
    assert refused["status"] == 403
    assert refused["body"]["error"] == "csrf_missing"


def test_operator_saves_the_filtered_devices_as_a_group(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    page = sign_in(Role.OPERATOR)
    page.select_option("#fleet-filter select[name=tag]", "site-a")
    page.click("#fleet-filter button[type=submit]")
    page.fill("#group-name", "Not A Name!")
    page.click("#save-group button[type=submit]")
    error = page.locator('[data-error-for="name"]')
    expect(error).to_contain_text("invalid group name")
    expect(page.locator("#group-name")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "fleet-group-refused")
    name = f"{live_server.fleet.prefix}-saved"
    page.fill("#group-name", name)
    page.click("#save-group button[type=submit]")
    expect(page.locator("#save-group .form-status")).to_have_text(
        f"Group {name} saved with 6 devices."
    )
    expect(error).to_be_empty()
    group: Any = live_server.api(f"/groups/{name}")
    site_a = sorted(live_server.fleet.ids[p.name] for p in PLANS if p.site == "site-a")
    assert group["members"] == site_a


def test_every_page_of_the_nav_opens_by_keyboard(sign_in: SignIn) -> None:
    page = sign_in(Role.OPERATOR)
    for title in ("Devices", "Models", "Rollouts", "Drift", "Audit", "Fleet"):
        link = page.get_by_role("link", name=title, exact=True)
        link.focus()
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text(title)
        expect(page.locator("nav a[aria-current=page]")).to_have_text(title)
        screenshot(page, f"page-{title.lower()}")
