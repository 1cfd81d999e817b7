"""The Devices page in Chromium: groups as the API counts them, provisioning with its
one-time agent.toml and its refusals beside the field, and revoking from the Device page."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from edgefleet.server.db.models import Role
from tests.browser.conftest import LiveServer, SignIn, screenshot
from tests.server.api.conftest import unique_id

TABLET = {"width": 820, "height": 1180}


def open_devices(page: Page) -> None:
    page.get_by_role("link", name="Devices", exact=True).click()
    expect(page.locator("h1")).to_have_text("Devices")
    page.wait_for_selector("body[data-ready=true]")


def provision(page: Page, device_id: str, profile: str = "sim", tags: str = "") -> None:
    page.get_by_label("Device id", exact=True).last.fill(device_id)
    page.get_by_label("Hardware profile").select_option(profile)
    page.get_by_label("Tags").fill(tags)
    page.get_by_role("button", name="Provision").click()


def test_groups_show_the_apis_members(live_server: LiveServer, sign_in: SignIn) -> None:
    page = sign_in(Role.VIEWER)
    open_devices(page)
    groups: Any = live_server.api("/groups")
    assert groups
    rows = page.locator("#groups tbody tr")
    expect(rows).to_have_count(len(groups))
    for group in groups:
        row = page.locator(f'#groups tr[data-group="{group["name"]}"]')
        expect(row.locator("td.num")).to_have_text(str(len(group["members"])))
        expect(row.get_by_role("link")).to_have_attribute("href", f"/ui/?group={group['name']}")
    assert page.locator("#provision").count() == 0
    screenshot(page, "devices-viewer")


def test_provisioning_shows_the_config_once_and_refuses_bad_input_beside_the_field(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    page = sign_in(Role.OPERATOR)
    open_devices(page)
    device_id = unique_id("ui")
    provision(page, device_id, tags="lab, floor-2")
    expect(page.locator("#provision .form-status")).to_have_text(f"Device {device_id} provisioned.")
    config = page.locator("#bundle-config")
    expect(config).to_contain_text(device_id)
    expect(config).to_contain_text("password")
    expect(page.locator("#bundle-download")).to_have_attribute(
        "download", f"{device_id}.agent.toml"
    )
    device: Any = live_server.api(f"/devices/{device_id}")
    assert (device["state"], device["profile"], set(device["tags"])) == (
        "provisioned",
        "sim",
        {"lab", "floor-2"},
    )
    screenshot(page, "devices-provisioned")

    provision(page, device_id)
    error = page.locator('[data-error-for="id"]')
    expect(error).to_contain_text(device_id)
    expect(page.locator("#pv-id")).to_have_attribute("aria-invalid", "true")

    provision(page, "not a valid id!")
    expect(error).to_contain_text("invalid device id")
    provision(page, unique_id("ui"), tags="Not A Tag")
    expect(page.locator('[data-error-for="tags"]')).to_contain_text("invalid tag")
    assert "not a valid id!" not in {d["id"] for d in live_server.api("/fleet/devices")["items"]}


def test_an_operator_revokes_a_device_after_confirming(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    device_id = unique_id("ui")
    live_server.http.post(
        "/api/v1/devices", headers=live_server.headers(), json={"id": device_id, "profile": "sim"}
    ).raise_for_status()
    page = sign_in(Role.OPERATOR, viewport=TABLET)
    open_devices(page)
    screenshot(page, "devices-tablet")
    page.get_by_label("Device id", exact=True).first.fill(device_id)
    expect(page.locator("#device-ids option")).to_have_text([device_id])
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text(device_id)
    page.wait_for_selector("body[data-ready=true]")

    dialog = page.locator("dialog#confirm")
    page.get_by_role("button", name="Revoke device…").click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_have_text(f"Revoke {device_id}?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator('[data-fact="state"]')).to_have_text("provisioned")
    assert live_server.api(f"/devices/{device_id}")["state"] == "provisioned"

    page.get_by_role("button", name="Revoke device…").click()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#revoke-status")).to_have_text(f"{device_id} is revoked.")
    expect(page.locator('[data-fact="state"]')).to_have_text("revoked")
    expect(page.get_by_role("button", name="Revoke device…")).to_be_hidden()
    assert live_server.api(f"/devices/{device_id}")["state"] == "revoked"


def test_a_viewer_gets_no_revoke_button(live_server: LiveServer, sign_in: SignIn) -> None:
    page = sign_in(Role.VIEWER)
    page.goto(f"/ui/devices/{live_server.fleet.ids['a2']}")
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator('[data-fact="state"]')).not_to_have_text("–")
    assert page.locator("#revoke, dialog#confirm").count() == 0
