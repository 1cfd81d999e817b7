"""The Rollouts and Audit pages in Chromium, on the seeded fleet and a real TFLite model.

Rollouts are created through the page's form and acted on through its buttons; the
test's own changes go through the REST API, as another operator's would, and the page
must show them from the live stream without a reload.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from edgefleet.server.db.models import Role
from tests.browser.conftest import LiveServer, SignIn, screenshot
from tests.harness.models import TfliteModels
from tests.server.api.conftest import unique_id


@pytest.fixture
def model(live_server: LiveServer, tflite_models: TfliteModels) -> str:
    """An approved version 1 with artifacts for both of the fleet's profiles."""
    name = unique_id("ui-model")
    response = live_server.http.post(
        f"/api/v1/models/{name}/versions",
        headers=live_server.headers(),
        files={"file": ("model.tflite", tflite_models.float32, "application/octet-stream")},
        data={"profiles": "rpi4,sim", "variant": "float32", "dataset_hash": "ab" * 32},
    )
    assert response.status_code == 201, response.text
    approved = live_server.http.patch(
        f"/api/v1/models/{name}/versions/1",
        headers=live_server.headers(),
        json={"stage": "approved"},
    )
    assert approved.status_code == 200, approved.text
    return name


def open_rollouts(page: Page, query: str = "") -> None:
    page.get_by_role("link", name="Rollouts", exact=True).click()
    if query:
        page.goto(f"/ui/rollouts{query}")
    page.wait_for_selector("body[data-ready=true]")


def fill_create_form(page: Page, live: LiveServer, model: str) -> None:
    page.select_option("#ro-group", live.fleet.groups["site-a"])
    page.fill("#ro-model", model)
    page.fill("#ro-version", "1")


def confirm(page: Page, action: str, reason: str = "") -> None:
    page.click(f'[data-action="{action}"]')
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    if reason:
        page.fill("#confirm-reason", reason)
    page.click("#confirm-yes")
    expect(dialog).to_be_hidden()


def post(live: LiveServer, path: str, body: Any = None) -> Any:
    response = live.http.post(f"/api/v1{path}", headers=live.headers(), json=body)
    assert response.status_code == 200, response.text
    return response.json()


def draft(live: LiveServer, site: str, model: str) -> str:
    """A draft rollout of ``model`` v1 to a site's group, made by another API client."""
    created = live.http.post(
        "/api/v1/rollouts",
        headers=live.headers(),
        json={"group": live.fleet.groups[site], "model": model, "version": 1},
    )
    assert created.status_code == 201, created.text
    rid: str = created.json()["id"]
    return rid


def test_create_start_and_pause_a_rollout_seen_live(
    live_server: LiveServer, sign_in: SignIn, model: str
) -> None:
    page = sign_in(Role.OPERATOR)
    open_rollouts(page)
    page.evaluate("window.__notReloaded = true")
    fill_create_form(page, live_server, model)
    page.click("#create-rollout button[type=submit]")
    expect(page.locator("#create-rollout .form-status")).to_contain_text("created")
    expect(page.locator('#detail [data-field="state"]')).to_have_text("draft")
    rid = page.locator('#detail [data-field="id"]').inner_text()
    expect(page.locator(f'#rollouts tr[data-rollout="{rid}"] .rollout-state')).to_have_text("draft")
    api_status: Any = live_server.api(f"/rollouts/{rid}")
    assert (api_status["model"], api_status["group"]) == (model, live_server.fleet.groups["site-a"])
    assert [w["percent"] for w in api_status["policy"]["waves"]] == [10, 50, 100]

    confirm(page, "start")
    expect(page.locator('#detail [data-field="state"]')).to_have_text("running")
    waves = page.locator("#waves li")
    expect(waves).to_have_count(3)
    status: Any = live_server.api(f"/rollouts/{rid}")
    first = status["waves"][0]
    expect(waves.first.locator(".wave-head")).to_contain_text(
        f"Wave 1 · 10% · {first['state']} · {first['devices']} devices"
    )
    expect(page.locator('[data-action="pause"]')).to_be_visible()
    expect(page.locator('[data-action="start"]')).to_be_hidden()

    confirm(page, "pause", reason="checking the gates")
    expect(page.locator('#detail [data-field="state"]')).to_have_text("paused")
    expect(page.locator('#detail [data-field="reason"]')).to_have_text("checking the gates")
    assert live_server.api(f"/rollouts/{rid}")["state"] == "paused"
    screenshot(page, "rollouts-operator")

    post(live_server, f"/rollouts/{rid}/resume")
    expect(page.locator('#detail [data-field="state"]')).to_have_text("running")
    expect(page.locator(f'#rollouts tr[data-rollout="{rid}"] .rollout-state')).to_have_text(
        "running"
    )
    assert page.evaluate("window.__notReloaded") is True
    post(live_server, f"/rollouts/{rid}/abort", {"reason": "test over"})
    expect(page.locator('#detail [data-field="state"]')).to_have_text("aborted")
    page.set_viewport_size({"width": 820, "height": 1180})
    screenshot(page, "rollouts-tablet")


def test_the_servers_reasons_show_beside_their_fields(
    live_server: LiveServer, sign_in: SignIn, model: str
) -> None:
    page = sign_in(Role.OPERATOR)
    open_rollouts(page)
    fill_create_form(page, live_server, model)
    page.fill("#wave-1-percent", "120")
    page.click("#create-rollout button[type=submit]")
    expect(page.locator('[data-error-for="waves[1].percent"]')).to_contain_text(
        "waves[1].percent must be"
    )
    expect(page.locator("#wave-1-percent")).to_have_attribute("aria-invalid", "true")

    page.fill("#wave-1-percent", "50")
    page.fill("#gate-max_output_psi", "-1")
    page.click("#create-rollout button[type=submit]")
    expect(page.locator('[data-error-for="gates.max_output_psi"]')).to_contain_text(
        "gates.max_output_psi must be"
    )
    expect(page.locator('[data-error-for="waves[1].percent"]')).to_be_empty()

    page.fill("#gate-max_output_psi", "0.25")
    page.fill("#ro-version", "7")
    page.click("#create-rollout button[type=submit]")
    expect(page.locator('[data-error-for="version"]')).to_contain_text("has no version 7")
    screenshot(page, "rollouts-form-refused")
    assert live_server.api("/rollouts", model=model) == []


def test_a_stale_page_acting_on_a_finished_rollout_shows_the_409_reason(
    live_server: LiveServer, sign_in: SignIn, model: str
) -> None:
    rid = draft(live_server, "site-b", model)
    post(live_server, f"/rollouts/{rid}/start")
    page = sign_in(Role.OPERATOR, live=False)
    open_rollouts(page, f"?rollout={rid}")
    expect(page.locator('#detail [data-field="state"]')).to_have_text("running")
    post(live_server, f"/rollouts/{rid}/abort", {"reason": "done elsewhere"})
    confirm(page, "pause")
    expect(page.locator("#action-status")).to_contain_text("Refused:")
    expect(page.locator("#action-status")).to_contain_text("it is aborted")
    expect(page.locator('#detail [data-field="state"]')).to_have_text("aborted")


def test_a_viewer_sees_rollouts_but_no_action_buttons(
    live_server: LiveServer, sign_in: SignIn, model: str
) -> None:
    rid = draft(live_server, "site-a", model)
    page = sign_in(Role.VIEWER)
    open_rollouts(page)
    page.click(f'#rollouts tr[data-rollout="{rid}"] a')
    expect(page.locator('#detail [data-field="state"]')).to_have_text("draft")
    expect(page.locator("[data-operator]")).to_have_count(0)
    expect(page.locator("#create-rollout")).to_have_count(0)
    expect(page.locator("dialog")).to_have_count(0)
    screenshot(page, "rollouts-viewer")


def test_audit_filters_and_pages(live_server: LiveServer, sign_in: SignIn) -> None:
    actor = "ui-admin"
    page = sign_in(Role.VIEWER)
    page.get_by_role("link", name="Audit", exact=True).click()
    page.wait_for_selector("body[data-ready=true]")
    everything: Any = live_server.api("/audit", limit=50)
    expect(page.locator("#audit tbody tr")).to_have_count(len(everything))
    page.fill("#audit-filter input[name=action]", "group.create")
    page.keyboard.press("Enter")
    expected: Any = live_server.api("/audit", action="group.create", limit=50)
    assert expected, "the seeded fleet creates groups"
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(len(expected))
    assert [int(r.get_attribute("data-audit") or 0) for r in rows.all()] == [
        e["id"] for e in expected
    ]
    page.fill("#audit-filter input[name=actor]", actor)
    page.keyboard.press("Enter")
    expected = live_server.api("/audit", action="group.create", actor=actor, limit=50)
    expect(rows).to_have_count(len(expected))
    page.fill("#audit-filter input[name=since]", "2000-01-01T00:00")
    page.fill("#audit-filter input[name=until]", "2000-01-02T00:00")
    page.keyboard.press("Enter")
    expect(page.locator("#audit-summary")).to_have_text("No records match.")
    expect(page.locator("#page-next")).to_be_disabled()
    page.click("#audit-filter button[type=reset]")
    expect(rows).to_have_count(len(everything))
    screenshot(page, "audit")
