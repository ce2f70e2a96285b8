"""A generated trading session and the server side of each protocol's message shapes. Pure.

Trades follow a seeded random walk per symbol with consecutive trade ids; the encoders write
them exactly as each exchange's documentation shows its frames (Coinbase `match`, Binance
combined-stream `trade`, Kraken v2 `trade` with JSON-number prices, Alpaca `T: t` arrays).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson

PRICE_STEP = Decimal("0.01")
SIZE_STEP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class SimTrade:
    symbol: str  # the venue's own symbol (BTC-USD, BTCUSDT, BTC/USD, AAPL)
    trade_id: int
    price: Decimal
    size: Decimal
    taker_side: str  # buy | sell
    time: datetime
    sequence: int  # Coinbase-style feed sequence (grows faster than trade ids)


def _instrument(symbol: str) -> str:
    """BTC-USD, BTCUSDT and BTC/USD are one instrument: their tapes start at one price."""
    plain = "".join(ch for ch in symbol.upper() if ch.isalnum())
    return plain.removesuffix("T") if plain.endswith("USDT") else plain


class SymbolTape:
    """The next trades of one symbol: a seeded random walk (±0.02 % a trade), consecutive ids."""

    def __init__(self, symbol: str, *, seed: int = 7, first_trade_id: int = 1000) -> None:
        digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))
        self.symbol = symbol
        self.next_id = first_trade_id
        self.sequence = first_trade_id * 3
        base = hashlib.sha256(_instrument(symbol).encode()).digest()
        self.price = Decimal(100 + int.from_bytes(base[:4], "big") % 60_000) + Decimal("0.25")

    def next(self, at: datetime) -> SimTrade:
        step = self.price * Decimal(self.rng.randint(-20, 20)) / 100_000
        self.price = max(PRICE_STEP, (self.price + step).quantize(PRICE_STEP))
        size = Decimal(self.rng.randint(1, 250_000_000)) * SIZE_STEP
        self.sequence += self.rng.randint(1, 4)  # other message types share the sequence
        trade = SimTrade(
            symbol=self.symbol,
            trade_id=self.next_id,
            price=self.price,
            size=size,
            taker_side="buy" if self.rng.random() < 0.5 else "sell",
            time=at,
            sequence=self.sequence,
        )
        self.next_id += 1
        return trade


def _iso_us(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(value: Decimal) -> str:
    return format(value, "f")


# --- Coinbase Exchange ---------------------------------------------------------------------


def coinbase_match(trade: SimTrade, *, kind: str = "match") -> str:
    return orjson.dumps(
        {
            "type": kind,
            "trade_id": trade.trade_id,
            "maker_order_id": f"m-{trade.trade_id}",
            "taker_order_id": f"t-{trade.trade_id}",
            # the maker's side: opposite of the taker's
            "side": "sell" if trade.taker_side == "buy" else "buy",
            "size": _plain(trade.size),
            "price": _plain(trade.price),
            "product_id": trade.symbol,
            "sequence": trade.sequence,
            "time": _iso_us(trade.time),
        }
    ).decode()


def coinbase_heartbeat(symbol: str, *, last_trade_id: int, sequence: int, at: datetime) -> str:
    return orjson.dumps(
        {
            "type": "heartbeat",
            "sequence": sequence,
            "last_trade_id": last_trade_id,
            "product_id": symbol,
            "time": _iso_us(at),
        }
    ).decode()


def coinbase_subscriptions(symbols: Sequence[str]) -> str:
    channels = [{"name": n, "product_ids": list(symbols)} for n in ("matches", "heartbeat")]
    return orjson.dumps({"type": "subscriptions", "channels": channels}).decode()


def coinbase_error(message: str) -> str:
    return orjson.dumps({"type": "error", "message": message, "reason": "simulated"}).decode()


# --- Binance Spot --------------------------------------------------------------------------


def binance_trade(trade: SimTrade) -> str:
    epoch_ms = int(trade.time.timestamp() * 1000)
    return orjson.dumps(
        {
            "stream": f"{trade.symbol.lower()}@trade",
            "data": {
                "e": "trade",
                "E": epoch_ms,
                "s": trade.symbol,
                "t": trade.trade_id,
                "p": _plain(trade.price),
                "q": _plain(trade.size),
                "T": epoch_ms,
                "m": trade.taker_side == "sell",  # the buyer was the maker
                "M": True,
            },
        }
    ).decode()


def binance_error(message: str) -> str:
    return orjson.dumps({"code": 3, "msg": message}).decode()


def binance_streams(query: str) -> list[str]:
    """Symbols from `streams=btcusdt@trade/ethusdt@trade` (upper-cased, as Binance names)."""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "streams":
            return [s.split("@", 1)[0].upper() for s in value.split("/") if s.endswith("@trade")]
    return []


# --- Kraken v2 -----------------------------------------------------------------------------


def _number(value: Decimal) -> orjson.Fragment:
    """A JSON number written from the decimal's digits (never through a float)."""
    return orjson.Fragment(_plain(value).encode())


def kraken_trades(trades: Sequence[SimTrade]) -> str:
    # Kraken v2 sends prices and quantities as JSON numbers.
    data = [
        {
            "symbol": t.symbol,
            "side": t.taker_side,
            "price": _number(t.price),
            "qty": _number(t.size),
            "ord_type": "market",
            "trade_id": t.trade_id,
            "timestamp": _iso_us(t.time),
        }
        for t in trades
    ]
    return orjson.dumps({"channel": "trade", "type": "update", "data": data}).decode()


def kraken_status() -> str:
    data = [{"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": 1}]
    return orjson.dumps({"channel": "status", "type": "update", "data": data}).decode()


def kraken_subscribed(symbol: str, *, at: datetime) -> str:
    return orjson.dumps(
        {
            "method": "subscribe",
            "result": {"channel": "trade", "symbol": symbol, "snapshot": False},
            "success": True,
            "time_in": _iso_us(at),
            "time_out": _iso_us(at),
        }
    ).decode()


def kraken_heartbeat() -> str:
    return '{"channel":"heartbeat"}'


def kraken_error(message: str) -> str:
    return orjson.dumps({"error": message, "method": "subscribe", "success": False}).decode()


# --- Alpaca --------------------------------------------------------------------------------


def alpaca_trades(trades: Sequence[SimTrade]) -> str:
    data = [
        {
            "T": "t",
            "i": t.trade_id,
            "S": t.symbol,
            "x": "V",
            "p": _number(t.price),
            "s": _number(t.size),
            "t": t.time.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z",  # RFC-3339, nanoseconds
            "c": ["@"],
            "z": "C",
        }
        for t in trades
    ]
    return orjson.dumps(data).decode()


def alpaca_control(kind: str, **fields: object) -> str:
    return orjson.dumps([{"T": kind, **fields}]).decode()
