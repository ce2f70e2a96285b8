"""The page in a real headless Chromium (Debian's, driven by Playwright through
`executable_path`; nothing downloaded), through a private nginx running the project's
nginx.conf: log in, watch the price, chart, alerts and reviews follow records produced on the
topics, see a quiet symbol go stale, and see the page reconnect after the dashboard is killed.
Screenshots of each view go to tests/artifacts/dashboard/."""

from __future__ import annotations

import random
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from contracts.events import AlertKind, AlertSeverity
from dashboard_harness import (
    ARTIFACTS,
    VIEWER_KEY,
    CuttableProxy,
    DashboardProcess,
    Producer,
    start_private_nginx,
)
from dashboard_records import alert, candle, forming, review

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SYMBOLS = {"BTC-USD": 67000, "ETH-USD": 3500, "AAPL": 190, "MSFT": 420, "NVDA": 130}
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(minutes=45)
TIMEOUT_MS = 8000


def history() -> tuple[list[tuple[str, bytes | None, Any]], dict[str, Decimal]]:
    """45 minutes of candles (BTC, ETH and NVDA moving together), alerts and reviews."""
    rng = random.Random(7)
    items: list[tuple[str, bytes | None, Any]] = []
    closes = {s: Decimal(p) for s, p in SYMBOLS.items()}
    for minute in range(45):
        common = rng.gauss(0, 0.004)
        for symbol in SYMBOLS:
            beta = 1.0 if symbol in ("BTC-USD", "ETH-USD", "NVDA") else 0.1
            move = Decimal(str(round(beta * common + rng.gauss(0, 0.0008), 5)))
            before = closes[symbol]
            closes[symbol] = (before * (1 + move)).quantize(Decimal("0.01"))
            items.append(
                (
                    "candles",
                    symbol.encode(),
                    candle(
                        symbol,
                        minute,
                        str(closes[symbol]),
                        open_=str(before),
                        start=START,
                        volume=str(rng.randint(5, 50)),
                        sma=str(before),
                    ),
                )
            )
    items.append(
        (
            "alerts",
            b"NVDA",
            alert(
                "NVDA", message="NVDA moved +6.1 % in 5 minutes", at=START + timedelta(minutes=30)
            ),
        )
    )
    items.append(
        (
            "alerts",
            b"MSFT",
            alert(
                "MSFT",
                kind=AlertKind.STALE_FEED,
                severity=AlertSeverity.INFO,
                message="no MSFT tick for 120 s",
                at=START + timedelta(minutes=40),
            ),
        )
    )
    for n, (sku, rating) in enumerate(
        [
            ("TST-200", 4),
            ("TST-200", 2),
            ("BLN-300", 5),
            ("BLN-300", 4),
            ("KTL-100", 5),
            ("KTL-100", 1),
            ("KTL-100", 2),
            ("KTL-100", 1),
        ]
    ):
        items.append(
            (
                "reviews",
                f"r{n}".encode(),
                review(
                    sku,
                    rating,
                    review_id=f"r{n}",
                    at=START + timedelta(minutes=5 * n),
                    body="Stopped working after a week, emailed [EMAIL] twice."
                    if rating <= 2
                    else "Does the job.",
                ),
            )
        )
    items.append(
        (
            "alerts",
            b"KTL-100",
            alert(
                "KTL-100",
                kind=AlertKind.NEGATIVE_BURST,
                severity=AlertSeverity.CRITICAL,
                message="3 negative reviews of KTL-100 in 10 minutes",
                at=NOW - timedelta(minutes=10),
                window_end=NOW + timedelta(minutes=30),
            ),
        )
    )
    return items, closes


@pytest.fixture(scope="module")
def site(
    stack_env: dict[str, str],
    dashboard_topics: dict[str, str],
    producer: Producer,
    stack_module: ModuleType,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, DashboardProcess, dict[str, Decimal]]]:
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's chromium is missing: `make browser-tools` (apt-get install chromium)",
            pytrace=False,
        )
    items, closes = history()
    producer.send(items)
    portfolio = tmp_path_factory.mktemp("portfolio") / "portfolio.yaml"
    portfolio.write_text(
        "- {symbol: BTC-USD, quantity: '0.5', cost: '60000'}\n"
        "- {symbol: ETH-USD, quantity: '4', cost: '3100.10'}\n"
        "- {symbol: AAPL, quantity: '25', cost: '175.25'}\n"
        "- {symbol: NVDA, quantity: '40', cost: '118.40'}\n"
    )
    d = DashboardProcess(
        stack_env,
        dashboard_topics,
        DASHBOARD_LOOKBACK_S="3600",
        DASHBOARD_STALE_AFTER_S="8",
        DASHBOARD_PORTFOLIO_FILE=str(portfolio),
        DASHBOARD_CORRELATION_WINDOWS="10,30,60",
    )
    d.start()
    url, stop = start_private_nginx(stack_module, dashboard_port=d.port)
    try:
        yield url, d, closes
    finally:
        stop()
        d.stop()


@pytest.fixture(scope="module")
def page(site: tuple[str, DashboardProcess, dict[str, Decimal]]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 760})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        blocked: list[str] = []
        origin = site[0]
        pg.on(
            "request",
            lambda r: (
                None
                if r.url.startswith(origin) or r.url.startswith("data:")
                else blocked.append(r.url)
            ),
        )
        pg.blocked = blocked  # type: ignore[attr-defined]
        yield pg
        context.close()
        browser.close()


def expect_text(page: Any, selector: str, pattern: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector).first).to_have_text(re.compile(pattern), timeout=TIMEOUT_MS)


def shot(page: Any, name: str) -> None:
    page.wait_for_timeout(300)  # let the charts finish their frame
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_login_then_markets_follow_the_live_candles(
    page: Any, site: Any, producer: Producer
) -> None:
    url, _d, closes = site
    page.goto(f"{url}/dashboard/#/markets/BTC-USD")
    assert page.locator("#key").count() == 1  # 401 login form, nothing else served
    page.fill("#key", VIEWER_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/"))
    page.goto(f"{url}/dashboard/#/markets/BTC-USD")
    expect_text(page, "#conn", "^live$")
    expect_text(page, "#chart-legend", r"^45 candles")
    assert page.locator("#chart canvas").count() > 0
    assert page.locator(".column h3").all_text_contents() == ["Crypto", "Equities"]
    minute = 45
    producer.send(
        [("live", b"BTC-USD", forming("BTC-USD", minute, "70123.45", start=START))]
        + [
            ("live", s.encode(), forming(s, minute, str(closes[s]), start=START))
            for s in ("ETH-USD", "AAPL", "NVDA")
        ]
    )
    sent = time.monotonic()
    expect_text(page, "#chart-last", r"^70,123\.45$")
    expect_text(page, ".sym-row[data-symbol='BTC-USD'] .last", r"^70,123\.45$")
    assert time.monotonic() - sent < 5
    expect_text(page, "#chart-legend", r"^46 candles .* C 70,123\.45 .*forming")
    producer.send(
        [("live", b"BTC-USD", forming("BTC-USD", minute, "70200.00", trades=9, start=START))]
    )
    expect_text(page, "#chart-last", r"^70,200\.00$")
    producer.send(
        [
            (
                "candles",
                b"BTC-USD",
                candle("BTC-USD", minute, "70150.5", open_="70123.45", start=START),
            )
        ]
    )
    expect_text(page, "#chart-legend", r"^46 candles .* C 70,150\.50 .*closed")
    # MSFT has had no record since the history: after DASHBOARD_STALE_AFTER_S it shows stale
    page.locator(".sym-row[data-symbol='MSFT'] .badge.stale").wait_for(
        state="visible", timeout=15000
    )
    producer.send(
        [
            ("live", s.encode(), forming(s, minute, str(closes[s]), trades=20, start=START))
            for s in ("ETH-USD", "AAPL", "NVDA")
        ]
    )
    producer.send([("live", b"BTC-USD", forming("BTC-USD", minute + 1, "70180", start=START))])
    expect_text(page, "#chart-last", r"^70,180\.00$")
    shot(page, "markets")
    assert page.blocked == []  # type: ignore[attr-defined]  # nothing from outside the machine


def test_alert_feed_updates_and_filters(page: Any, site: Any, producer: Producer) -> None:
    page.goto(f"{site[0]}/dashboard/#/alerts")
    producer.send(
        [
            (
                "alerts",
                b"BTC-USD",
                alert(
                    "BTC-USD",
                    severity=AlertSeverity.CRITICAL,
                    message="BTC-USD moved +4.6 % in 5 minutes",
                    at=NOW,
                ),
            )
        ]
    )
    expect_text(page, "#alerts li:first-child span", r"BTC-USD moved \+4\.6 %")
    page.select_option("#alert-kind", "stale_feed")
    expect_text(page, "#alerts li:first-child span", "no MSFT tick")
    assert page.locator("#alerts li").count() == 1
    page.select_option("#alert-kind", "")
    shot(page, "alerts")
    page.goto(f"{site[0]}/dashboard/#/markets/BTC-USD")  # the alert is marked on the chart
    expect_text(page, "#chart-last", r"\d")


def test_negative_review_appears_with_its_burst(page: Any, site: Any, producer: Producer) -> None:
    page.goto(f"{site[0]}/dashboard/#/reviews")
    producer.send(
        [
            (
                "reviews",
                b"live-1",
                review(
                    "KTL-100",
                    1,
                    review_id="live-1",
                    at=NOW,
                    body="Leaks everywhere, call me at [PHONE].",
                ),
            )
        ]
    )
    expect_text(page, "#negative li:first-child p", r"Leaks everywhere, call me at \[PHONE\]\.")
    assert "burst" in (page.locator("#negative li:first-child").get_attribute("class") or "")
    expect_text(page, ".product[data-product='KTL-100'] h4", "5 reviews")
    assert page.locator(".product.burst").count() == 1
    shot(page, "reviews")


def test_correlation_and_portfolio_views(page: Any, site: Any) -> None:
    page.goto(f"{site[0]}/dashboard/#/correlation")
    # ETH and NVDA moved together in the history (BTC's jump above breaks its pairs)
    expect_text(page, "td[data-pair='ETH-USD|NVDA']", r"^0\.\d\d$")
    eth_nvda = float(page.locator("td[data-pair='ETH-USD|NVDA']").inner_text())
    assert eth_nvda > 0.5
    assert float(page.locator("td[data-pair='ETH-USD|AAPL']").inner_text()) < eth_nvda
    served = site[1].get("/dashboard/api/snapshot?views=correlation").json()["correlation"]
    r = served["values"]["30"]["BTC-USD|NVDA"]["r"]
    expect_text(page, "td[data-pair='BTC-USD|NVDA']", "^" + re.escape(f"{r:.2f}") + "$")
    shot(page, "correlation")
    page.goto(f"{site[0]}/dashboard/#/portfolio")
    snapshot = site[1].get("/dashboard/api/snapshot?views=markets").json()["markets"]
    last = {s: Decimal(m["price"]["last"]) for s, m in snapshot.items()}
    value = (
        Decimal("0.5") * last["BTC-USD"]
        + 4 * last["ETH-USD"]
        + 25 * last["AAPL"]
        + 40 * last["NVDA"]
    )
    expected = f"{value.quantize(Decimal('0.01')):,}"
    expect_text(page, "#pf-value", "^" + re.escape(expected) + "$")
    shot(page, "portfolio")


def test_page_shows_reconnecting_and_recovers_after_the_stream_dies(page: Any, site: Any) -> None:
    url, d, _ = site
    page.goto(f"{url}/dashboard/#/markets/BTC-USD")
    expect_text(page, "#conn", "^live$")
    d.kill()
    expect_text(page, "#conn", "^reconnecting$")
    shot(page, "reconnecting")
    d.start()
    expect_text(page, "#conn", "^live$")
    expect_text(page, "#chart-last", r"^70,180\.00$")  # state rebuilt from Kafka, fresh snapshot


def test_page_resumes_with_the_missed_deltas_after_a_network_blip(
    page: Any, site: Any, producer: Producer
) -> None:
    """The stream is cut between the browser and nginx (the dashboard keeps running); a price
    moves meanwhile; EventSource reconnects with Last-Event-ID and the server answers with the
    missed delta, not a snapshot; the page shows the new price."""
    url, d, _ = site
    nginx_port = int(url.rsplit(":", 1)[1])
    proxy = CuttableProxy(nginx_port)
    try:
        origin = f"http://127.0.0.1:{proxy.port}"  # same host: the session cookie applies
        page.goto(f"{origin}/dashboard/#/markets/BTC-USD")
        expect_text(page, "#conn", "^live$")
        producer.send([("live", b"BTC-USD", forming("BTC-USD", 46, "70210.00", start=START))])
        expect_text(page, "#chart-last", r"^70,210\.00$")
        streams_before = sum(b"GET /dashboard/stream" in r for r in proxy.requests)
        proxy.cut()
        expect_text(page, "#conn", "^reconnecting$")
        producer.send([("live", b"BTC-USD", forming("BTC-USD", 46, "70250.00", start=START))])
        # the dashboard has it once the snapshot API shows it (the page is cut off)
        deadline = time.monotonic() + 10
        while "70250" not in d.get("/dashboard/api/snapshot?views=markets").text:
            assert time.monotonic() < deadline, "the dashboard did not take the record"
            time.sleep(0.1)
        time.sleep(0.5)  # a flush (0.25 s): the frame is in the replay buffer
        proxy.resume()
        expect_text(page, "#conn", "^live$")
        expect_text(page, "#chart-last", r"^70,250\.00$")
        # the stream request is the last on its connection (keep-alive): its answer is last
        streams = [
            (bytes(request), bytes(answer))
            for request, answer in zip(proxy.requests, proxy.responses, strict=True)
            if b"GET /dashboard/stream" in request
        ]
        assert len(streams) > streams_before
        request, answer = streams[-1]
        assert b"last-event-id:" in request.lower()  # EventSource sent where it was
        body = answer[answer.rindex(b"text/event-stream") :].partition(b"\r\n\r\n")[2]
        first_event = re.search(rb"event: (\w+)", body)
        assert first_event is not None and first_event.group(1) == b"delta", body[:300]
        assert b"70250" in body
        metrics = d.get("/metrics").text
        assert re.search(r'pulse_dashboard_resumes_total\{outcome="replayed"\} [1-9]', metrics)
        shot(page, "resumed")
    finally:
        proxy.close()


@pytest.fixture(scope="module", autouse=True)
def keep_docs_screenshots() -> Iterator[None]:
    yield
    if (ARTIFACTS / "markets.png").exists():
        docs = Path(__file__).resolve().parents[3] / "services" / "dashboard" / "docs"
        docs.mkdir(exist_ok=True)
        for name in ("markets", "correlation", "portfolio", "reviews", "alerts"):
            if (ARTIFACTS / f"{name}.png").exists():
                shutil.copy(ARTIFACTS / f"{name}.png", docs / f"{name}.png")
