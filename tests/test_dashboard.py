"""The query API and the live dashboard in headless Chromium, after a simulated campaign."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from contract.alerts import (
    Alert,
    AlertType,
    ScopeType,
    fingerprint,
    make_alert_id,
    scope_key,
)
from contract.deadletters import Reason, Stage
from contract.topics import Topic
from query.api import create_api
from sinks.clickhouse.store import Store
from switchboard.broker import free_port
from tests import callbacks, scenario
from tests.browser import CHROMIUM, Browser
from tests.harness import ROOT, serve_in_thread

TOKEN = "dashboard-test-token"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def api(store: Store) -> Iterator[str]:
    scenario.insert_campaign(store, scenario.minute_base())
    with serve_in_thread(create_api(store, TOKEN), free_port()) as url:
        yield url


@pytest.mark.parametrize(
    "path",
    ["/api/dashboard", "/api/reports/delivery", "/api/reports/alerts", "/api/exports/calls"],
)
def test_api_answers_401_without_the_right_token(api: str, path: str) -> None:
    assert httpx2.get(api + path).status_code == 401
    wrong = httpx2.get(api + path, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert httpx2.get(api + path, params={"token": "nope"}).status_code == 401
    right = httpx2.get(api + path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200


def test_api_reports_json_and_refuses_bad_filters(api: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    [summary] = httpx2.get(api + "/api/reports/summary", headers=auth).json()["rows"]
    assert (summary["delivery_rate"], summary["alerts"], summary["avg_mos"]) == (0.4444, 2, 3.5)
    failures = httpx2.get(api + "/api/reports/failures?limit=1", headers=auth).json()["rows"]
    assert failures[0]["meaning"] == "unreachable handset"
    assert httpx2.get(api + "/api/reports/mos?since=yesterday", headers=auth).status_code == 400
    assert httpx2.get(api + "/api/reports/mos?bucket_s=0", headers=auth).status_code == 400
    assert httpx2.get(api + "/api/reports/nope", headers=auth).status_code == 404


def test_dashboard_assets_are_served_by_switchboard(api: str) -> None:
    page = httpx2.get(api + "/dashboard")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("dashboard.js", "charts.js", "dashboard.css"):
        response = httpx2.get(f"{api}/dashboard/static/{asset}")
        assert response.status_code == 200
        assert "https://" not in response.text and "http://" not in response.text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_dashboard_shows_the_campaign_live_in_chromium(
    api: str, store: Store, tmp_path: Path
) -> None:
    browser = Browser(tmp_path / "chromium")
    try:
        browser.navigate(f"{api}/dashboard?token=wrong")
        browser.wait_for(
            "document.body.dataset.state === 'error'"
            " && document.getElementById('status').textContent.includes('refused the token')",
            what="the page to say the API refused a wrong token",
        )
        assert browser.evaluate("document.getElementById('delivery-rate').textContent") == "–"
        browser.navigate(f"{api}/dashboard?token={TOKEN}&bucket_s=60&refresh=500")
        browser.wait_for(
            "document.body.dataset.state === 'live'"
            " && document.getElementById('delivery-rate').textContent === '44.4%'",
            what="the dashboard to show the campaign's delivery rate",
        )
        text = browser.evaluate(
            "Object.fromEntries(['delivery-rate', 'messages-total', 'alert-count', 'calls-total',"
            " 'calls-minutes', 'avg-mos', 'dead-letters']"
            ".map(id => [id, document.getElementById(id).textContent]))"
        )
        assert text == {
            "delivery-rate": "44.4%",
            "messages-total": "13",
            "alert-count": "2",
            "calls-total": "10",
            "calls-minutes": "5",
            "avg-mos": "3.50",
            "dead-letters": "0",
        }
        # the token left the address bar, and every request stayed on Switchboard's origin
        assert "token" not in browser.evaluate("location.href")
        fetched = [u for u in browser.requests if not u.startswith("data:")]
        assert fetched and all(u.startswith(api) for u in fetched), fetched

        # Each chart drew what it was given, and the pixels are there.
        points = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('canvas')]"
            ".map(c => [c.id, c.dataset.drawn === '1' ? Number(c.dataset.points) : -1]))"
        )
        assert points == {"rate-chart": 4, "funnel-chart": 6, "errors-chart": 7, "mos-chart": 2}
        for canvas in points:
            inked = browser.evaluate(
                f"(() => {{ const c = document.getElementById('{canvas}');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;"
                " return n; })()"
            )
            assert inked > 500, f"{canvas} has only {inked} painted pixels"
        assert browser.evaluate("document.querySelectorAll('#alerts-table tbody tr').length") == 2
        assert "unreachable handset" in browser.evaluate(
            "document.getElementById('errors-table').textContent"
        )

        # New callbacks and an alert arrive: the page follows without a reload.
        browser.evaluate("window.stillTheSamePage = true")
        base = scenario.minute_base()
        scenario.insert_events(
            store, [scenario.sms("SM011", "delivered", time.time(), "fall-promo")]
        )
        scope = scope_key(ScopeType.CAMPAIGN, "fall-promo")
        fired = Alert(
            make_alert_id(fingerprint(AlertType.SMS_FAILURE_RATE, scope, "60s"), base),
            AlertType.SMS_FAILURE_RATE, scope, base, base + 60, 2, 20.0, 66.7, time.time(),
        )  # fmt: skip
        scenario.insert_alerts(store, [fired])
        browser.wait_for(
            "document.getElementById('alert-count').textContent === '3'"
            " && document.getElementById('delivery-rate').textContent === '50.0%'",
            what="the new alert and callback to show",
        )
        assert browser.evaluate("window.stillTheSamePage") is True
        assert browser.evaluate("document.querySelectorAll('#alerts-table tr.new').length") == 1

        # A callback is dead-lettered: its count and reason show.
        statusless = callbacks.sms("SM012", "", campaign="fall-promo").to_bytes()
        dead = scenario.letter(
            statusless, Reason.NO_STATUS, Stage.INTAKE, Topic.CALLBACKS_SMS, time.time()
        )
        scenario.insert_letters(store, [dead])
        browser.wait_for(
            "document.getElementById('dead-letters').textContent === '1'"
            " && document.getElementById('dead-letters-table').textContent.includes('no_status')",
            what="the dead letter to show",
        )

        # The filters go to the API (and from there to ClickHouse as parameters).
        number = scenario.to_number("SM003")
        browser.evaluate(
            f"document.querySelector('[name=number]').value = '{number}';"
            " document.getElementById('filters').requestSubmit()"
        )
        browser.wait_for(
            "document.getElementById('messages-total').textContent === '1'"
            " && document.getElementById('delivery-rate').textContent === '0.0%'"
            " && document.getElementById('alert-count').textContent === '0'",
            what="the number filter to apply",
        )
        assert "number=%2B15551000003" in browser.evaluate("location.search")
        browser.evaluate(
            "document.querySelector('[name=number]').value = '';"
            " document.getElementById('filters').requestSubmit()"
        )
        browser.wait_for(
            "document.getElementById('alert-count').textContent === '3'", what="filters cleared"
        )

        shot = browser.screenshot(ARTIFACTS / "dashboard.png")
        assert shot.stat().st_size > 10_000
        if os.environ.get("SWITCHBOARD_DOCS_SCREENSHOT"):  # the README's picture, on request
            browser.screenshot(ROOT / "docs" / "dashboard.png", scale=0.7)
    finally:
        browser.close()


def test_dashboard_data_is_shared_between_viewers_per_filter(api: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def get(**params: str) -> dict[str, Any]:
        response = httpx2.get(api + "/api/dashboard", params=params, headers=auth)
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    everything, fall = get(), get(campaign="fall-promo")
    again = get()
    assert everything["panels"]["summary"][0]["messages"] == 13
    assert fall["panels"]["summary"][0]["messages"] == 3
    assert again["generated_at"] == everything["generated_at"]  # one computation, two viewers
    assert set(everything["panels"]) == {
        "summary", "delivery-rate", "failures", "mos", "calls", "alerts", "firing",
        "failure-windows", "dead-letters", "reconciled",
    }  # fmt: skip
