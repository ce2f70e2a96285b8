"""Viewer access: keys, session cookies, 401/400/503 at the door, read-only portfolio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard.access import COOKIE, ViewerAccess
from dashboard.app import Dashboard, check_web_dir, create_app, load_portfolio
from dashboard.settings import DashboardSettings
from dashboard.views import Subscription
from servicekit.settings import KafkaSettings

KEY = "viewer-key-for-unit-tests"
PORTFOLIO_KEY = "portfolio-key-for-unit-tests"


def test_keys_and_sessions() -> None:
    access = ViewerAccess((KEY, "another-viewer-key-x"), ttl_s=60)
    assert access.key_ok(KEY) and access.key_ok("another-viewer-key-x")
    assert not access.key_ok("wrong") and not access.key_ok(None)
    token = access.issue(now_s=1000)
    assert access.session_ok(token, now_s=1059)
    assert not access.session_ok(token, now_s=1061)  # expired
    expiry, _, signature = token.partition(".")
    assert not access.session_ok(f"{int(expiry) + 3600}.{signature}", now_s=1000)  # tampered
    assert not access.session_ok("garbage", now_s=0)
    # Derived from the keys: a restart keeps sessions valid, a new key set ends them.
    assert ViewerAccess((KEY, "another-viewer-key-x"), ttl_s=60).session_ok(token, now_s=1000)
    assert not ViewerAccess(("a-brand-new-viewer-key",), ttl_s=60).session_ok(token, now_s=1000)


def test_settings_refuse_short_or_missing_viewer_keys() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        DashboardSettings(viewer_keys="short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one viewer key"):
        DashboardSettings(viewer_keys=" , ")  # type: ignore[arg-type]


def test_missing_web_build_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"DASHBOARD_WEB_DIR=.*make dashboard-web"):
        check_web_dir(tmp_path)


def test_portfolio_file_yaml_or_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("- {symbol: AAPL, quantity: '10', cost: '180.5'}\n")
    [position] = load_portfolio(yaml_file)
    assert str(position.cost) == "180.5"
    json_file = tmp_path / "p.json"
    json_file.write_text('{"positions": [{"symbol": "BTC-USD", "quantity": "0.5", "cost": "1"}]}')
    assert load_portfolio(json_file)[0].symbol == "BTC-USD"
    json_file.write_text('[{"symbol": "X", "quantity": "1", "cost": "-1"}]')
    with pytest.raises(ValueError, match="cost"):
        load_portfolio(json_file)


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[Dashboard, httpx.AsyncClient]]:
    settings = DashboardSettings(
        viewer_keys=KEY,  # type: ignore[arg-type]
        portfolio_keys=PORTFOLIO_KEY,  # type: ignore[arg-type]
        max_clients=1,
    )
    d = Dashboard(settings, KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1"))
    transport = httpx.ASGITransport(app=create_app(d))  # no lifespan: no Kafka
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        yield d, client


async def test_page_and_api_need_a_viewer_credential(dashboard: Any) -> None:
    _d, client = dashboard
    page = await client.get("/dashboard/")
    assert page.status_code == 401 and 'action="/dashboard/login"' in page.text
    assert (await client.get("/dashboard/api/snapshot")).status_code == 401
    assert (await client.get("/dashboard/stream")).status_code == 401
    assert (await client.get("/dashboard/vendor/uPlot.esm.js")).status_code == 401
    ok = await client.get("/dashboard/api/snapshot", headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and "markets" in ok.json()
    bearer = await client.get("/dashboard/", headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200 and "static/app.js" in bearer.text


async def test_login_sets_an_httponly_session_cookie(dashboard: Any) -> None:
    _d, client = dashboard
    refused = await client.post("/dashboard/login", data={"key": "not-the-key"})
    assert refused.status_code == 401 and COOKIE not in refused.cookies
    r = await client.post("/dashboard/login", data={"key": KEY})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/dashboard/" in cookie and "SameSite=strict" in cookie
    page = await client.get("/dashboard/")  # the client keeps the cookie
    assert page.status_code == 200
    vendor = await client.get("/dashboard/vendor/lightweight-charts.mjs")
    assert vendor.status_code == 200 and "createChart" in vendor.text


async def test_too_many_clients_get_503_with_retry_after(dashboard: Any) -> None:
    d, client = dashboard
    d.hub.clients.add(object())  # the one allowed client
    r = await client.get("/dashboard/stream", headers={"X-API-Key": KEY})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"


async def test_unknown_view_is_a_400(dashboard: Any) -> None:
    _d, client = dashboard
    r = await client.get("/dashboard/stream?views=nope", headers={"X-API-Key": KEY})
    assert r.status_code == 400 and "unknown views" in r.json()["detail"]


async def test_viewers_cannot_change_the_portfolio(dashboard: Any) -> None:
    d, client = dashboard
    body = [{"symbol": "AAPL", "quantity": "2", "cost": "100"}]
    r = await client.post("/dashboard/api/portfolio", json=body, headers={"X-API-Key": KEY})
    assert r.status_code == 401
    bad = await client.post(
        "/dashboard/api/portfolio", json=[{"symbol": "AAPL"}], headers={"X-API-Key": PORTFOLIO_KEY}
    )
    assert bad.status_code == 400 and "quantity" in bad.json()["detail"]
    r = await client.post(
        "/dashboard/api/portfolio", json=body, headers={"X-API-Key": PORTFOLIO_KEY}
    )
    assert r.status_code == 200 and r.json()["positions"][0]["cost_basis"] == "200.00"
    assert "portfolio" in d.hub.pending  # live clients get it at the next flush
    snap = d.state.snapshot(Subscription.parse(views="portfolio", symbols=None), now_s=0)
    assert snap["portfolio"]["positions"][0]["symbol"] == "AAPL"
