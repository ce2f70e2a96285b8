"""The dashboard's pure state: candles and prices, reviews, alerts, correlation, portfolio."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from contracts.events import AlertKind, ReviewOp
from dashboard.views import (
    DashboardState,
    Position,
    StateConfig,
    Subscription,
    pearson,
    portfolio_view,
    resolve,
    returns_by_time,
    rolling_correlation,
)
from dashboard_records import T0, alert, candle, forming, review


def state(**config: object) -> DashboardState:
    return DashboardState(StateConfig(**config))  # type: ignore[arg-type]


def test_forming_candle_moves_the_last_price_and_a_close_replaces_it() -> None:
    s = state()
    s.on_candle(candle("BTC-USD", 0, "100", open_="90"), now_s=0)
    [(key, later)] = s.on_forming(forming("BTC-USD", 1, "110.50"), now_s=1)
    price = resolve(later)  # built when the stream flushes, from the state then
    assert key == "price:BTC-USD"
    assert price["last"] == "110.5" and price["forming"]["t"] == int(T0.timestamp()) + 60
    assert price["change"] == "20.5"  # against the oldest candle's open, exact
    assert price["change_pct"] == "22.78"
    changes = s.on_candle(candle("BTC-USD", 1, "111"), now_s=2)
    assert [k for k, _ in changes] == [
        f"candle:BTC-USD:{int(T0.timestamp()) + 60}",
        "price:BTC-USD",
    ]
    assert s.symbols["BTC-USD"].forming is None and s.last_price("BTC-USD") == Decimal(111)


def test_forming_of_a_closed_or_older_window_is_ignored() -> None:
    s = state()
    s.on_candle(candle("ETH-USD", 5, "10"), now_s=0)
    assert s.on_forming(forming("ETH-USD", 5, "11"), now_s=1) == []
    s.on_forming(forming("ETH-USD", 7, "12", trades=4), now_s=1)
    assert s.on_forming(forming("ETH-USD", 6, "13"), now_s=1) == []
    assert s.on_forming(forming("ETH-USD", 7, "9", trades=2), now_s=1) == []  # reordered
    assert s.last_price("ETH-USD") == Decimal(12)


def test_candle_ring_keeps_the_newest_and_a_redelivery_replaces_its_twin() -> None:
    s = state(candles_per_symbol=3)
    for minute in range(5):
        s.on_candle(candle("AAPL", minute, str(100 + minute)), now_s=0)
    s.on_candle(candle("AAPL", 4, "200"), now_s=0)
    held = s.symbols["AAPL"].candles
    assert [c["c"] for c in held] == ["102", "103", "200"]
    s.on_candle(candle("AAPL", 3, "150"), now_s=0)  # out of order, same window
    assert [c["c"] for c in held] == ["102", "150", "200"]


def test_alerts_are_kept_once_and_bounded() -> None:
    s = state(alerts_max=2)
    first = alert("AAPL")
    assert len(s.on_alert(first, now_s=0)) == 1
    assert s.on_alert(first, now_s=0) == []  # redelivered
    s.on_alert(alert("MSFT"), now_s=0)
    s.on_alert(alert("NVDA"), now_s=0)
    assert [a["subject"] for a in s.alerts] == ["MSFT", "NVDA"]


def test_review_counts_follow_edits_and_deletes() -> None:
    s = state()
    s.on_review(review("KTL-100", 1, review_id="r1"), now_s=0)
    s.on_review(review("KTL-100", 5, review_id="r2"), now_s=0)
    assert s.product_view("KTL-100")["ratings"] == [1, 0, 0, 0, 1]
    assert list(s.negative) == ["r1"]
    changes = s.on_review(review("KTL-100", 4, review_id="r1"), now_s=0)  # edited upwards
    assert ("review:r1", None) in changes and not s.negative
    assert s.product_view("KTL-100")["ratings"] == [0, 0, 0, 1, 1]
    s.on_review(review("KTL-100", 4, review_id="r1", op=ReviewOp.DELETE), now_s=0)
    view = s.product_view("KTL-100")
    assert view["ratings"] == [0, 0, 0, 0, 1] and view["count"] == 1


def test_negative_feed_is_bounded_and_marks_bursts() -> None:
    s = state(negative_reviews_max=2)
    s.on_review(review("KTL-100", 1, review_id="a"), now_s=0)
    burst = alert(
        "KTL-100",
        kind=AlertKind.NEGATIVE_BURST,
        at=T0,
        window_end=T0 + timedelta(minutes=10),
    )
    changes = s.on_alert(burst, now_s=0)
    assert ("review:a", s.negative["a"]) in changes and s.negative["a"]["burst"] is True
    s.on_review(review("KTL-100", 2, review_id="b", at=T0 + timedelta(minutes=1)), now_s=0)
    assert s.negative["b"]["burst"] is True
    changes = s.on_review(review("TST-200", 1, review_id="c"), now_s=0)
    assert ("review:a", None) in changes and list(s.negative) == ["b", "c"]
    assert s.negative["c"]["burst"] is False
    assert s.negative["c"]["body"] == "It leaks. Contact [EMAIL] for a refund."


def test_pearson_matches_the_textbook_values() -> None:
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3], [5, 5, 5]) is None  # no variance
    assert pearson([1, 2], [1, 2]) is None  # too few
    xs, ys = [1.0, 2.0, 3.0, 5.0, 8.0], [1.0, 3.0, 2.0, 7.0, 9.0]
    mx, my = sum(xs) / 5, sum(ys) / 5
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    den = math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    assert pearson(xs, ys) == pytest.approx(num / den)


def test_rolling_correlation_uses_only_shared_minutes_within_the_window() -> None:
    a = returns_by_time([(0, 100), (60, 110), (120, 99), (180, 120), (240, 130)])
    assert a[60] == pytest.approx(0.1) and set(a) == {60, 120, 180, 240}
    b = {60: 0.2, 120: -0.2, 180: 0.4, 300: 1.0}  # 240 missing, 300 not in a
    r, n = rolling_correlation(a, b, window=30)
    assert n == 3 and r == pytest.approx(pearson([a[60], a[120], a[180]], [0.2, -0.2, 0.4]))
    _, n = rolling_correlation(a, b, window=2)
    assert n == 2


def test_correlation_view_pairs_each_crypto_with_each_equity_live() -> None:
    s = state(correlation_windows=(3, 10))
    moves = ["100", "110", "99", "120", "118", "125"]
    for minute, close in enumerate(moves):
        s.on_candle(candle("BTC-USD", minute, close), now_s=0)
        s.on_candle(candle("AAPL", minute, str(Decimal(close) * 2)), now_s=0)  # same returns
        s.on_candle(candle("MSFT", minute, str(300 - Decimal(close))), now_s=0)
    view = s.correlation()
    assert view["crypto"] == ["BTC-USD"] and view["equity"] == ["AAPL", "MSFT"]
    assert view["values"]["10"]["BTC-USD|AAPL"] == {"r": 1.0, "n": 5}
    assert view["values"]["3"]["BTC-USD|AAPL"]["n"] == 3
    assert view["values"]["10"]["BTC-USD|MSFT"]["r"] < -0.9
    s.on_forming(forming("BTC-USD", 6, "200"), now_s=0)  # the forming close counts too
    s.on_forming(forming("AAPL", 6, "250"), now_s=0)
    assert s.correlation()["values"]["10"]["BTC-USD|AAPL"]["n"] == 6


def test_portfolio_maths_is_exact_to_the_cent() -> None:
    positions = [
        Position(symbol="BTC-USD", quantity=Decimal("0.1"), cost=Decimal("60000.10")),
        Position(symbol="AAPL", quantity=Decimal("3"), cost=Decimal("0.1")),
        Position(symbol="NVDA", quantity=Decimal("1"), cost=Decimal("1")),
    ]
    prices = {"BTC-USD": Decimal("67012.55"), "AAPL": Decimal("0.2")}
    view = portfolio_view(positions, prices, {"BTC-USD": "crypto", "AAPL": "equity"})
    btc, aapl, nvda = view["positions"]
    assert btc["market_value"] == "6701.26"  # 6701.255 → half-even
    assert btc["pnl"] == "701.24"  # 6701.255 - 6000.010 = 701.245 → half-even
    assert aapl["market_value"] == "0.60" and aapl["pnl"] == "0.30" and aapl["pnl_pct"] == "100.00"
    # float arithmetic would give 0.30000000000000004 for 3 × 0.1; the totals stay exact:
    assert view["total_value"] == "6701.86" and view["total_cost"] == "6000.31"
    assert view["total_pnl"] == "701.54"
    assert nvda["market_value"] is None and view["unpriced"] == ["NVDA"]
    assert view["exposure"] == {
        "crypto": {"value": "6701.26", "share_pct": "99.99"},
        "equity": {"value": "0.60", "share_pct": "0.01"},
    }


def test_portfolio_follows_the_live_price() -> None:
    s = state()
    s.set_positions([Position(symbol="ETH-USD", quantity=Decimal(2), cost=Decimal(1000))])
    s.on_forming(forming("ETH-USD", 0, "1500.25"), now_s=0)
    view = s.portfolio()
    assert view["total_value"] == "3000.50" and view["total_pnl"] == "1000.50"
    assert view["positions"][0]["asset_class"] == "crypto"


def test_status_marks_quiet_symbols_and_feeds_stale() -> None:
    s = state(stale_after_s=30)
    s.on_forming(forming("BTC-USD", 0, "1"), now_s=100)
    s.on_forming(forming("AAPL", 0, "1"), now_s=120)
    status = s.status(now_s=140)
    assert status["stale_symbols"] == ["BTC-USD"] and not status["feeds"]["live"]["stale"]
    assert status["feeds"]["reviews"]["stale"]  # nothing ever came
    assert s.status(now_s=151)["feeds"]["live"]["stale"]


def test_subscription_routes_keys_to_views_and_symbols() -> None:
    sub = Subscription.parse(views="markets", symbols="BTC-USD,AAPL")
    assert sub.wants("price:BTC-USD") and sub.wants("candle:AAPL:123")
    assert not sub.wants("price:MSFT") and not sub.wants("review:x")
    assert sub.wants("alert:1") and sub.wants("status")
    assert Subscription.parse(views=None, symbols=None).wants("portfolio")
    with pytest.raises(ValueError, match="unknown views: nope"):
        Subscription.parse(views="markets,nope", symbols=None)


def test_snapshot_holds_only_the_subscribed_views() -> None:
    s = state()
    s.on_candle(candle("BTC-USD", 0, "1"), now_s=0)
    s.on_candle(candle("AAPL", 0, "1"), now_s=0)
    doc = s.snapshot(Subscription.parse(views="markets", symbols="AAPL"), now_s=0)
    assert set(doc) == {"status", "markets", "alerts"} and set(doc["markets"]) == {"AAPL"}
