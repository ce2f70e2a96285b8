"""The bytes of a `TradeExecuted` record, written straight from a decoded trade. Pure.

The hot path (one call per trade) builds neither the pydantic model nor a dict for orjson: the
parts of the JSON that depend only on the feed and the symbol (venue, both symbols, asset
class, the key) are escaped once per symbol (`SymbolRecords`), and per trade the rest is put
in between as text: the trade id, the price and size exactly as `plain_decimal` checked them,
the side, the two times. The JSON is the contract's (decimals as plain strings, times RFC 3339
as orjson writes them); tests/unit/market_feeds check every field against
`contracts.events.TradeExecuted` so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson
from contracts.rows import AssetClass

from market_feeds.protocols import WireTrade


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~2x, once per trade
class TradeRecord:
    """One trade ready for Kafka: key (the Pulse symbol's bytes), value (contract JSON), event
    time."""

    key: bytes
    value: bytes
    event_time_s: float  # epoch seconds, for the publish-lag metric


def _json_text(value: str) -> str:
    """`value` as the inside of a JSON string (escaped, without the quotes)."""
    return orjson.dumps(value).decode()[1:-1]


@dataclass(frozen=True, slots=True)
class SymbolRecords:
    """What every record of one venue symbol shares, escaped once: the JSON up to the trade id
    in `event_id`, and from there to the `trade_id` field's value."""

    symbol: str  # Pulse's
    key: bytes  # the symbol's bytes: the Kafka key
    head: str  # {"event_id":"<venue>:<venue symbol>:
    middle: str  # ","venue":…,"trade_id":"

    @classmethod
    def of(
        cls, *, venue: str, venue_symbol: str, symbol: str, asset_class: AssetClass
    ) -> SymbolRecords:
        middle = orjson.dumps(
            {
                "venue": venue,
                "symbol": symbol,
                "venue_symbol": venue_symbol,
                "asset_class": asset_class,  # a StrEnum: orjson writes its value
            }
        ).decode()
        return cls(
            symbol=symbol,
            key=symbol.encode(),
            head='{"event_id":"' + _json_text(f"{venue}:{venue_symbol}:"),
            middle='",' + middle[1:-1] + ',"trade_id":"',
        )


def symbol_records(
    *, venue: str, symbols: Mapping[str, str], asset_class: AssetClass
) -> dict[str, SymbolRecords]:
    """venue symbol → its `SymbolRecords`, for a feed's symbol map (venue symbol → Pulse's)."""
    return {
        venue_symbol: SymbolRecords.of(
            venue=venue, venue_symbol=venue_symbol, symbol=symbol, asset_class=asset_class
        )
        for venue_symbol, symbol in symbols.items()
    }


def json_time(at: datetime) -> str:
    """`at` as a JSON string, quotes included, as orjson writes an aware datetime (RFC 3339
    with the offset, microseconds when not 0): a fifth of what `isoformat()` costs."""
    return orjson.dumps(at).decode()


def write_trade(parts: SymbolRecords, wire: WireTrade, *, received_at_json: str) -> TradeRecord:
    """`wire` as a TradeExecuted record. `wire` was validated by the protocol decoder (plain
    positive decimals within DECIMAL(38,18), timezone-aware times); `received_at_json` is the
    frame's arrival as `json_time` writes it (once per frame)."""
    trade_id = wire.trade_id
    if not trade_id.isdigit():  # Alpaca's `x-i`: the exchange's letter, escaped
        trade_id = _json_text(trade_id)
    sequence = wire.sequence
    event_time = wire.event_time
    value = (
        f'{parts.head}{trade_id}{parts.middle}{trade_id}","price":"{wire.price_text}",'
        f'"size":"{wire.size_text}","side":"{wire.side}",'
        f'"event_time":{json_time(event_time)},"received_at":{received_at_json},'
        f'"sequence":{"null" if sequence is None else sequence}}}'
    )
    return TradeRecord(parts.key, value.encode(), event_time.timestamp())


def encode_trade(
    wire: WireTrade,
    *,
    venue: str,
    symbol: str,
    asset_class: AssetClass,
    received_at: datetime,
) -> TradeRecord:
    """One record without a feed's precomputed parts (tests, one-offs): the same bytes as
    `write_trade`."""
    parts = SymbolRecords.of(
        venue=venue, venue_symbol=wire.venue_symbol, symbol=symbol, asset_class=asset_class
    )
    return write_trade(parts, wire, received_at_json=json_time(received_at))
