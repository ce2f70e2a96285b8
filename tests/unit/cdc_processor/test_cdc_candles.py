"""Candles on event time: OHLCV, VWAP, SMA/EMA exactness, grace, late, duplicate, redelivery."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from cdc_fixtures import CANDLE_CONFIG, T0, tick, tick_flow
from cdc_processor import candles
from cdc_processor.decoding import Tick
from contracts import topics

Q = "market.quotes.v1"


def run(ticks: list[Tick], *, flow=None) -> tuple[list[dict], list]:
    flow = flow or tick_flow()
    out, rejected = [], []
    for offset, t in enumerate(ticks):
        outputs, rej = flow.on_tick(t, position=(Q, 0, offset))
        out += [orjson.loads(o.value) for o in outputs if o.topic == topics.MARKET_CANDLES.name]
        if rej:
            rejected.append(rej.reason)
    return out, rejected


def test_ohlcv_and_vwap_of_one_minute() -> None:
    ticks = [
        tick(1, "100", 1, size="2"),
        tick(2, "105", 20),
        tick(3, "95", 40, size="3"),
        tick(4, "101", 59),
        tick(5, "102", 66),
    ]  # 66 s: past 60 + 5 s grace → first candle closes
    [candle], rejected = run(ticks)
    assert rejected == []
    assert candle["open"] == "100.000000000000000000"
    assert candle["close"] == "101.000000000000000000"
    assert candle["high"] == "105.000000000000000000"
    assert candle["low"] == "95.000000000000000000"
    assert candle["volume"] == "7.000000000000000000" and candle["trade_count"] == 4
    # By hand: (100×2 + 105×1 + 95×3 + 101×1) / 7 = 691 / 7 = 98.714285714285714285 714…,
    # to 18 decimals, the 19th digit (7) rounding the last one up.
    assert candle["vwap"] == "98.714285714285714286"
    assert candle["window_start"].startswith("2026-11-22T17:00:00")


def test_tick_within_grace_lands_in_previous_window() -> None:
    ticks = [tick(1, "100", 10), tick(2, "110", 62), tick(3, "90", 59.5), tick(4, "111", 70)]
    [candle], rejected = run(ticks)
    assert candle["trade_count"] == 2 and Decimal(candle["low"]) == 90
    assert rejected == []


def test_tick_after_grace_is_late() -> None:
    ticks = [tick(1, "100", 10), tick(2, "110", 70), tick(3, "90", 30)]
    _, rejected = run(ticks)
    assert rejected == ["late"]


def test_non_positive_and_duplicate_ticks_are_rejected() -> None:
    ticks = [tick(1, "100", 1), tick(2, "0", 2), tick(3, "-5", 3), tick(1, "100", 1)]
    _, rejected = run(ticks)
    assert rejected == ["invalid", "invalid", "duplicate"]


def test_redelivered_offset_is_skipped_silently() -> None:
    flow = tick_flow()
    flow.on_tick(tick(1, "100", 1), position=(Q, 0, 5))
    outputs, rejected = flow.on_tick(tick(1, "100", 1), position=(Q, 0, 5))
    assert outputs == [] and rejected is None
    assert flow.states["BTC-USD"]["open"][str(int(T0.timestamp()))]["n"] == 1


def test_sma_and_ema_exact() -> None:
    closes = ["10", "11", "12", "13"]
    ticks = [tick(i, p, 60 * i + 1) for i, p in enumerate(closes)] + [tick(99, "1", 60 * 4 + 10)]
    out, _ = run(ticks)
    assert [c["sma"] for c in out] == [None, None, "11.000000000000000000", "12.000000000000000000"]
    # EMA(3): alpha 0.5, seeded with the first close.
    assert [Decimal(c["ema"]) for c in out] == [
        Decimal("10"),
        Decimal("10.5"),
        Decimal("11.25"),
        Decimal("12.125"),
    ]


def test_decimals_exact_beyond_float_precision() -> None:
    ticks = [
        tick(1, "67012.500000000000000001", 1, size="0.000000000000000003"),
        tick(2, "67012.500000000000000003", 2, size="0.000000000000000001"),
        tick(3, "1", 70),
    ]
    [candle], _ = run(ticks)
    assert candle["vwap"] == "67012.500000000000000002"
    assert candle["volume"] == "0.000000000000000004"


def test_restart_from_state_snapshot_equals_uninterrupted_run() -> None:
    ticks = [tick(i, str(100 + i % 7), 7 * i) for i in range(60)]
    whole, _ = run(ticks)
    flow = tick_flow()
    first, _ = run(ticks[:25], flow=flow)
    # Simulate recovery from the changelog: state survives through JSON, then offsets 20..59
    # are redelivered (20..24 already applied).
    restored = tick_flow()
    restored.states = {k: orjson.loads(orjson.dumps(v)) for k, v in flow.states.items()}
    rest = []
    for offset in range(20, 60):
        outputs, _ = restored.on_tick(ticks[offset], position=(Q, 0, offset))
        rest += [orjson.loads(o.value) for o in outputs if o.topic == topics.MARKET_CANDLES.name]
    strip = lambda cs: [{k: v for k, v in c.items() if k != "emitted_at"} for c in cs]  # noqa: E731
    assert strip(first + rest) == strip(whole)


def test_price_move_alert() -> None:
    flow = tick_flow()
    prices = ["100", "101", "107", "107.5"]
    alerts = []
    for i, p in enumerate([*prices, "1"]):
        outputs, _ = flow.on_tick(tick(i, p, 60 * i + 1), position=(Q, 0, i))
        alerts += [orjson.loads(o.value) for o in outputs if o.topic == topics.ALERTS.name]
    assert [a["kind"] for a in alerts] == ["price_move"]
    assert alerts[0]["details"]["from"] == "100.000000000000000000"


@pytest.mark.parametrize(
    ("at", "start"),
    [
        (T0, T0),
        (T0 + timedelta(seconds=59, microseconds=999_999), T0),
        (T0 + timedelta(seconds=60), T0 + timedelta(minutes=1)),
        (T0 - timedelta(microseconds=1), T0 - timedelta(minutes=1)),
        # The same instant written in UTC+05:30 falls in the same UTC minute.
        ((T0 + timedelta(seconds=30)).astimezone(timezone(timedelta(hours=5, minutes=30))), T0),
    ],
)
def test_window_start_is_the_utc_minute_floor(at: datetime, start: datetime) -> None:
    assert candles.window_start(at) == start


@pytest.mark.parametrize(("after_grace_s", "closes"), [(-0.001, False), (0.0, True)])
def test_a_window_closes_once_the_watermark_passes_its_end_plus_grace(
    after_grace_s: float, closes: bool
) -> None:
    # The window 17:00:00–17:01:00: closed by a tick at its end + grace exactly, not by one a
    # millisecond earlier.
    watermark_s = 60 + CANDLE_CONFIG.grace.total_seconds() + after_grace_s
    out, rejected = run([tick(1, "100", 1), tick(2, "101", watermark_s)])
    assert rejected == []
    assert [c["window_start"][:19] for c in out] == (["2026-11-22T17:00:00"] if closes else [])
