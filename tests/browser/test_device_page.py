"""The Device page in Chromium: the API's numbers for one device, its charts' ranges,
its update history arriving live, and a device that does not exist."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from edgefleet.server.db.models import DriftWindow, Role
from edgefleet.server.fleet.buckets import choose_step
from edgefleet.server.web.pages import CHART_POINTS
from edgefleet.shared.messages import Event, EventKind
from edgefleet.shared.topics import Channel
from tests.browser.conftest import LiveServer, SignIn, screenshot
from tests.server.api.fleet_seed import MODEL, _drift_row, send

FEATURES = {"rms": {"psi": 0.412, "ks": 0.207}, "peak": {"psi": 0.051, "ks": 0.033}}


def _register_model_with_features(live: LiveServer, device_id: str) -> None:
    """The seeded windows' model in the registry, and a newer judged window with features:
    drift is read only for registered models."""
    known = live.http.get(f"/api/v1/models/{MODEL}", headers=live.headers())
    if known.status_code == 404:
        live.http.post(
            "/api/v1/models", headers=live.headers(), json={"name": MODEL}
        ).raise_for_status()
    row = _drift_row(device_id, time.time())
    row.score = 3.5
    row.statistics = {"features": FEATURES, "thresholds": None}
    with live.services.sessions() as session:
        # Other pages' tests add windows for this device on the same server: take the next seq.
        latest = session.scalar(
            select(func.max(DriftWindow.seq)).where(DriftWindow.device_id == device_id)
        )
        row.seq = (latest or 0) + 1
        session.add(row)
        session.commit()


def open_device(page: Page, device_id: str) -> None:
    page.get_by_role("link", name=device_id, exact=True).click()
    expect(page.locator("h1")).to_have_text(device_id)
    page.wait_for_selector("body[data-ready=true]")


def api_latest(live: LiveServer, device_id: str, figure: Any) -> tuple[int, dict[str, Any]]:
    """The API's buckets for the range the chart shows: (count, latest bucket)."""
    buckets: Any = live.api(
        f"/devices/{device_id}/telemetry",
        since=figure.get_attribute("data-since"),
        until=figure.get_attribute("data-until"),
        step=figure.get_attribute("data-step"),
    )
    return len(buckets), buckets[-1]


def test_device_page_shows_what_the_api_says(live_server: LiveServer, sign_in: SignIn) -> None:
    fleet = live_server.fleet
    device_id = fleet.ids["a2"]
    _register_model_with_features(live_server, device_id)
    page = sign_in(Role.VIEWER)
    page.fill("#fleet-filter input[name=search]", device_id)
    page.keyboard.press("Enter")
    open_device(page, device_id)

    device: Any = live_server.api(f"/devices/{device_id}")
    fact = page.locator("[data-fact]")
    expect(page.locator('[data-fact="state"]')).to_have_text(device["state"])
    expect(page.locator('[data-fact="profile"]')).to_have_text(device["profile"])
    expect(page.locator('[data-fact="groups"]')).to_have_text(fleet.groups["site-a"])
    expect(page.locator('[data-fact="current"]')).to_have_text(f"{MODEL} v3 (slot a)")
    expect(page.locator('[data-fact="previous"]')).to_have_text("none")
    assert "–" not in fact.all_inner_texts()

    events: Any = live_server.api(f"/devices/{device_id}/events")
    expect(page.locator("#events li")).to_have_count(len(events))

    rate = page.locator("#chart-rate")
    expect(rate.locator("svg path.series-0")).to_have_count(1)
    count, latest = api_latest(live_server, device_id, rate)
    assert rate.get_attribute("data-buckets") == str(count)
    expect(page.locator("#telemetry-latest")).to_contain_text(
        f"{latest['inferences']} inferences, {latest['errors']} errors"
    )

    expect(page.locator("#drift-summary")).to_contain_text("score 3.50, flagged")
    expect(page.locator("#drift tbody th")).to_have_text(list(FEATURES))
    expect(page.locator('#drift tr[data-feature="rms"] td')).to_have_text(["0.412", "0.207"])
    expect(page.locator("#samples tbody td")).to_have_text("No samples in the last 7 days.")
    screenshot(page, "device-laptop")
    page.set_viewport_size({"width": 820, "height": 1180})
    screenshot(page, "device-tablet")


def test_changing_the_range_redraws_the_charts_from_the_server(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    device_id = live_server.fleet.ids["a1"]
    page = sign_in(Role.VIEWER)
    page.goto(f"/ui/devices/{device_id}")
    page.wait_for_selector("body[data-ready=true]")
    rate = page.locator("#chart-rate")
    day_path = rate.locator("path.series-0").get_attribute("d")
    assert rate.get_attribute("data-step") == str(int(choose_step(0, 86_400, CHART_POINTS)))
    page.locator("#telemetry-range").focus()
    page.select_option("#telemetry-range", label="1 hour")
    hour_step = str(int(choose_step(0, 3_600, CHART_POINTS)))
    assert hour_step == "60"
    expect(rate).to_have_attribute("data-step", hour_step)
    expect(rate.locator("path.series-0")).not_to_have_attribute("d", day_path or "")
    count, latest = api_latest(live_server, device_id, rate)
    assert rate.get_attribute("data-buckets") == str(count)
    # a minute per bucket and one 100-inference window per minute: 100/60 per second
    assert latest["inferences"] == 100
    expect(page.locator("#telemetry-latest")).to_contain_text("100 inferences, 0 errors")
    for key in ("rate", "latency", "errors", "cpu", "memory"):
        expect(page.locator(f"#chart-{key}")).to_have_attribute("data-step", hour_step)
    screenshot(page, "device-one-hour")


def test_an_update_event_joins_the_history_without_reload(
    live_server: LiveServer, sign_in: SignIn
) -> None:
    fleet = live_server.fleet
    device_id = fleet.ids["a3"]
    page = sign_in(Role.VIEWER)
    page.goto(f"/ui/devices/{device_id}")
    page.wait_for_selector("body[data-ready=true]")
    page.evaluate("window.__notReloaded = true")
    before: Any = live_server.api(f"/devices/{device_id}/events")
    expect(page.locator("#events li")).to_have_count(len(before))
    event = Event(
        seq=len(before) + 100, at=time.time(), kind=EventKind.DOWNLOADING, model=MODEL, version=4
    )
    send(fleet.clients["a3"], device_id, Channel.EVENTS, event)
    expect(page.locator("#events li")).to_have_count(len(before) + 1)
    expect(page.locator("#events li").first).to_have_attribute("data-kind", "downloading")
    after: Any = live_server.api(f"/devices/{device_id}/events")
    assert page.locator("#events li").count() == len(after)
    assert page.evaluate("window.__notReloaded") is True


def test_a_device_that_does_not_exist_says_so(sign_in: SignIn) -> None:
    page = sign_in(Role.VIEWER)
    page.goto("/ui/devices/no-such-device")
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#device-error")).to_have_text("There is no device no-such-device.")
