"""market.trades.v1 → the same candle path as the other tick sources (in-memory Faust)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
from cdc_fixtures import T0
from cdc_processor.app import Processor
from contracts import topics
from contracts.events import TradeExecuted, TradeSide
from contracts.rows import AssetClass
from servicekit.kafka import encode_event
from test_cdc_agents import make_processor, sent


def trade(trade_id: int, price: str, size: str, at_s: float) -> bytes:
    return encode_event(
        TradeExecuted(
            event_id=f"coinbase:BTC-USD:{trade_id}",
            venue="coinbase",
            symbol="BTC-USD",
            venue_symbol="BTC-USD",
            asset_class=AssetClass.CRYPTO,
            trade_id=str(trade_id),
            price=Decimal(price),
            size=Decimal(size),
            side=TradeSide.BUY,
            event_time=T0 + timedelta(seconds=at_s),
            received_at=T0 + timedelta(seconds=at_s),
            sequence=trade_id,
        )
    )


@pytest.fixture
async def processor() -> AsyncIterator[Processor]:
    yield make_processor()


async def test_trades_build_exact_candles_and_a_replayed_trade_counts_once(
    processor: Processor,
) -> None:
    p = processor
    async with p.app.agents["trades"].test_context() as agent:
        await agent.put(trade(1, "67012.50", "0.00012345", 1), key=b"BTC-USD")
        await agent.put(trade(2, "67020.01", "0.5", 30), key=b"BTC-USD")
        # the same exchange trade again (a feed replay after a reconnect), at a new offset
        await agent.put(trade(2, "67020.01", "0.5", 30), key=b"BTC-USD")
        await agent.put(trade(3, "67001", "1", 70), key=b"BTC-USD")
    [(key, candle)] = sent(p, topics.MARKET_CANDLES.name)
    assert key == b"BTC-USD"
    assert Decimal(candle["open"]) == Decimal("67012.50")
    assert Decimal(candle["close"]) == Decimal("67020.01")
    assert Decimal(candle["volume"]) == Decimal("0.50012345")
    assert candle["trade_count"] == 2
    [(_key, dlq)] = sent(p, topics.DLQ.name)
    assert dlq["reason"] == "duplicate" and dlq["source_topic"] == topics.MARKET_TRADES.name


async def test_undecodable_trade_is_dead_lettered(processor: Processor) -> None:
    p = processor
    async with p.app.agents["trades"].test_context() as agent:
        await agent.put(b'{"venue": "kraken"}', key=b"BTC-USD")
    assert sent(p, topics.MARKET_CANDLES.name) == []
    [(_key, dlq)] = sent(p, topics.DLQ.name)
    assert dlq["reason"] == "schema_invalid"
