"""The bytes of a `TradeExecuted` record, written straight from a decoded trade. Pure.

The hot path (one call per trade) skips building the pydantic model: constructing it cost
about as much as everything else a trade goes through. The JSON is the contract's (decimals
as plain strings, times ISO-8601 UTC); tests/unit/market_feeds check every field against
`contracts.events.TradeExecuted` so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from contracts.rows import AssetClass

from market_feeds.protocols import WireTrade


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One trade ready for Kafka: key (the Pulse symbol's bytes), value (contract JSON), event
    time."""

    key: bytes
    value: bytes
    event_time_s: float  # epoch seconds, for the publish-lag metric


def encode_trade(
    wire: WireTrade,
    *,
    venue: str,
    symbol: str,
    asset_class: AssetClass,
    received_at: datetime,
    key: bytes | None = None,
) -> TradeRecord:
    """`wire` as a TradeExecuted record. `wire` was validated by the protocol decoder
    (positive decimals within DECIMAL(38,18), timezone-aware times). `key`: `symbol`'s bytes,
    if the caller keeps them (saves encoding the symbol once per trade)."""
    event_time = wire.event_time
    value = orjson.dumps(
        {
            "event_id": f"{venue}:{wire.venue_symbol}:{wire.trade_id}",
            "venue": venue,
            "symbol": symbol,
            "venue_symbol": wire.venue_symbol,
            "asset_class": asset_class,  # StrEnums: orjson writes their values
            "trade_id": wire.trade_id,
            "price": format(wire.price, "f"),
            "size": format(wire.size, "f"),
            "side": wire.side,
            "event_time": event_time,  # orjson writes RFC 3339 with the offset (+00:00)
            "received_at": received_at,
            "sequence": wire.sequence,
        }
    )
    return TradeRecord(key or symbol.encode(), value, event_time.timestamp())
