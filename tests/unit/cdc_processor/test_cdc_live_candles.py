"""Forming candles on market.candles.live.v1: same numbers as the close, throttled per symbol,
the newest held-back one sent by the timer, nothing for rejected ticks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from cdc_fixtures import T0, quote, tick, tick_flow
from cdc_processor import agents, candles
from cdc_processor.decoding import Tick
from cdc_processor.pipeline import TickFlow
from contracts import topics
from servicekit.clock import FakeClock
from test_cdc_agents import make_processor, sent

Q = "market.quotes.v1"
LIVE = topics.MARKET_CANDLES_LIVE.name


def live(outputs: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in outputs if o.topic == LIVE]


def feed(flow: TickFlow, ticks: list[Tick], start: int = 0) -> list[Any]:
    out: list[Any] = []
    for offset, t in enumerate(ticks, start):
        outputs, _rejected = flow.on_tick(t, position=(Q, 0, offset))
        out += outputs
    return out


def test_first_tick_of_a_symbol_sends_its_forming_candle_at_once() -> None:
    [candle] = live(feed(tick_flow(), [tick(1, "100", 1, size="2")]))
    assert candle["symbol"] == "BTC-USD" and candle["trade_count"] == 1
    assert Decimal(candle["close"]) == 100 and Decimal(candle["volume"]) == 2
    assert candle["window_start"].startswith("2026-11-22T17:00:00")
    assert candle["event_time"].startswith("2026-11-22T17:00:01")


def test_ticks_within_the_interval_are_held_and_the_newest_sent_when_due() -> None:
    clock = FakeClock(T0)
    flow = tick_flow(clock)
    first = live(feed(flow, [tick(1, "100", 1)]))
    held = live(feed(flow, [tick(2, "105", 2, size="3"), tick(3, "95", 3)], start=1))
    assert len(first) == 1 and held == []  # same monotonic instant: throttled
    assert flow.due_live_candles() == []  # interval not yet passed
    clock.advance(flow.live_interval_s)
    [due] = live(flow.due_live_candles())
    assert (Decimal(due["high"]), Decimal(due["low"]), Decimal(due["close"])) == (105, 95, 95)
    assert due["trade_count"] == 3 and Decimal(due["volume"]) == 5
    assert flow.due_live_candles() == []  # sent once


def test_a_held_back_candle_waits_at_most_a_check_period_past_the_interval() -> None:
    """With the timer firing every `live_check_interval_s` (its cadence in agents.register),
    in any phase relative to the throttle, the held-back candle goes out within the interval
    plus one check period of the previous send, not up to twice the interval."""
    period = tick_flow().live_check_interval_s
    interval = tick_flow().live_interval_s
    assert period <= interval / 4
    for phase in (0.001, 0.3, 0.7, 0.999):
        clock = FakeClock(T0)
        flow = tick_flow(clock)
        clock.advance(phase * period)  # the timer's phase against the first send
        feed(flow, [tick(1, "100", 1)])  # sent at once; the next is held back
        sent_at = clock.monotonic()
        feed(flow, [tick(2, "101", 2)], start=1)
        clock.advance((1 - phase) * period)  # the next timer firing
        while not live(flow.due_live_candles()):
            clock.advance(period)
        assert clock.monotonic() - sent_at <= interval + period + 1e-9


def test_held_back_ticks_build_no_candle_until_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst costs one build when it starts and one when the timer sends the newest."""
    built: list[str] = []
    real_forming = candles.forming

    def counting_forming(state: dict[str, Any], symbol: str, *, now: Any) -> Any:
        built.append(symbol)
        return real_forming(state, symbol, now=now)

    monkeypatch.setattr(candles, "forming", counting_forming)
    clock = FakeClock(T0)
    flow = tick_flow(clock)
    feed(flow, [tick(n, str(100 + n), n) for n in range(1, 51)])
    assert built == ["BTC-USD"]
    clock.advance(flow.live_interval_s)
    [due] = live(flow.due_live_candles())
    assert built == ["BTC-USD", "BTC-USD"] and Decimal(due["close"]) == 150


def test_throttle_is_per_symbol() -> None:
    flow = tick_flow()
    out = live(feed(flow, [tick(1, "100", 1), tick(2, "50", 1, symbol="ETH-USD")]))
    assert [c["symbol"] for c in out] == ["BTC-USD", "ETH-USD"]


def test_forming_candle_equals_the_closed_candle_of_the_same_ticks() -> None:
    clock = FakeClock(T0)
    flow = tick_flow(clock)
    last: dict[str, Any] = {}
    ticks = [tick(1, "100", 1, size="2"), tick(2, "105", 20), tick(3, "95.5", 40, size="3")]
    for offset, t in enumerate(ticks):
        clock.advance(1.0)  # past the interval: every tick sends
        outputs, _ = flow.on_tick(t, position=(Q, 0, offset))
        [last] = live(outputs)
    clock.advance(1.0)
    outputs, _ = flow.on_tick(tick(4, "101", 66), position=(Q, 0, 3))  # closes the first
    [closed] = [orjson.loads(o.value) for o in outputs if o.topic == topics.MARKET_CANDLES.name]
    for field in ("open", "high", "low", "close", "volume", "vwap", "trade_count", "window_start"):
        assert last[field] == closed[field], field
    [newest] = live(outputs)  # the next window is the one forming now
    assert newest["window_start"].startswith("2026-11-22T17:01:00") and newest["trade_count"] == 1


def test_rejected_tick_sends_no_forming_candle() -> None:
    clock = FakeClock(T0)
    flow = tick_flow(clock)
    feed(flow, [tick(1, "100", 1), tick(2, "101", 70)])
    clock.advance(5.0)
    outputs, rejected = flow.on_tick(tick(3, "99", 2), position=(Q, 0, 9))  # late
    assert rejected is not None and live(outputs) == []


def test_forming_of_an_empty_state_is_none() -> None:
    assert candles.forming(candles.new_state(), "BTC-USD", now=T0) is None


async def test_quotes_agent_sends_forming_candles_to_the_live_topic() -> None:
    p = make_processor()
    async with p.app.agents["quotes"].test_context() as agent:
        await agent.put(quote("AAPL", "190", T0 + timedelta(seconds=1)), key=b"AAPL")
        await agent.put(quote("AAPL", "191", T0 + timedelta(seconds=2)), key=b"AAPL")
    [(key, candle)] = sent(p, LIVE)  # the second is held by the throttle (fake clock)
    assert key == b"AAPL" and Decimal(candle["close"]) == 190
    p.clock.advance(p.settings.live_candle_interval_s)  # type: ignore[attr-defined]
    await agents.publish(p, p.ticks.due_live_candles())  # the live_candles timer's body
    [_, (_, held)] = sent(p, LIVE)
    assert Decimal(held["close"]) == 191 and held["trade_count"] == 2
