"""The four exchange protocols, client side: the URL, the opening messages and a frame decoder
per venue. Pure: no I/O. Field names follow each exchange's published documentation.

A decoder never raises: a frame is trades, control (acks, heartbeats, status), an exchange
error, or a rejection (`reason`, `detail`) that the connector dead-letters or counts.
Prices and sizes are exact decimals from the text on the wire, kept as that text once checked
(`plain_decimal`): Coinbase and Binance send strings; Kraken v2 and Alpaca send JSON numbers,
whose digits are quoted in the raw text before parsing (`QuotedNumbers`) so that `0.1` stays
`0.1` and never becomes a binary float. Frames may come as bytes (the connector skips the
WebSocket library's UTF-8 decode: orjson checks the encoding while it parses).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

import orjson
from contracts.events import TradeSide
from contracts.rows import AssetClass
from contracts.types import DECIMAL_PRECISION, DECIMAL_SCALE, utc_from_epoch_ms


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~2x, once per trade
class WireTrade:
    """One trade as a venue reported it, with exact decimals and a UTC event time.

    `price_text` and `size_text` are the decimals as plain text (`plain_decimal`: positive,
    within DECIMAL(38,18), no exponent, the digits the exchange sent): what the record carries.
    A `Decimal` is built from them only when asked for (`price`, `size`)."""

    venue_symbol: str
    trade_id: str
    number: int | None  # consecutive per symbol (the venue's trade id): gaps are detectable
    price_text: str
    size_text: str
    side: TradeSide
    event_time: datetime
    sequence: int | None = None  # the feed's own message sequence (Coinbase)

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_text)

    @property
    def size(self) -> Decimal:
        return Decimal(self.size_text)


_NONE: tuple[()] = ()


@dataclass(slots=True)
class Frame:
    # Empty tuples by default, not a list per field per frame: Coinbase and Binance send one
    # trade per frame, so a frame's construction is paid once per trade.
    trades: Sequence[WireTrade] = _NONE
    error: str | None = None  # the exchange reported an error: reconnect
    rejected: Sequence[tuple[str, str]] = _NONE  # (reason, detail) → DLQ
    skipped: str | None = None  # a known-but-unused or unknown message: counted, not published


class BadTradeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_MAX_INTEGER_DIGITS = DECIMAL_PRECISION - DECIMAL_SCALE


# A decimal already in the form `format(Decimal(text), "f")` writes: ASCII digits, no sign or
# exponent, no leading zero, a point only with digits after it, at most 20 digits before the
# point and 18 after (DECIMAL(38,18)).
_PLAIN_DECIMAL = re.compile(
    rf"(?:0|[1-9][0-9]{{0,{_MAX_INTEGER_DIGITS - 1}}})(?:\.[0-9]{{1,{DECIMAL_SCALE}}})?"
)


def plain_decimal(value: Any, *, name: str) -> str:
    """A positive decimal within DECIMAL(38,18), as plain text: the wire string itself in the
    usual case (checked, never parsed: no `Decimal` per price on the hot path), otherwise
    `exact(value)` written out without an exponent (`1e-8` → `0.00000001`, `01.50` → `1.50`).
    The text is what `format(Decimal(value), "f")` gives: the digits sent, trailing zeros kept."""
    if type(value) is str and _PLAIN_DECIMAL.fullmatch(value) is not None:
        if value.strip("0.") == "":
            raise BadTradeError(f"non_positive_{name}", f"{name} {value!r} is not positive")
        return value
    return format(exact(value, name=name), "f")


def exact(value: Any, *, name: str) -> Decimal:
    """A positive decimal that fits the archive's DECIMAL(38,18), from a wire string (or a
    Decimal parsed from a JSON number); floats are refused, they have lost exactness."""
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise BadTradeError("malformed", f"{name} {value!r} is not a decimal") from None
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        raise BadTradeError("malformed", f"{name} {value!r} is not a decimal string")
    if not number.is_finite() or number <= 0:
        raise BadTradeError(f"non_positive_{name}", f"{name} {value!r} is not a positive number")
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    if len(digits) + exponent > _MAX_INTEGER_DIGITS or -exponent > DECIMAL_SCALE:
        raise BadTradeError("malformed", f"{name} {value!r} does not fit DECIMAL(38,18)")
    return number


def utc_iso(value: Any) -> datetime:
    """An ISO-8601/RFC-3339 UTC time (nanoseconds are truncated to microseconds)."""
    if not isinstance(value, str):
        raise BadTradeError("malformed", f"time {value!r} is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadTradeError("malformed", f"time {value!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise BadTradeError("malformed", f"time {value!r} has no timezone")
    return parsed


def _int(value: Any, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadTradeError("malformed", f"{name} {value!r} is not an integer")
    return value


def _str(value: Any, *, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadTradeError("malformed", f"{name} {value!r} is not a string")
    return value


class VenueProtocol:
    """Base: the subclasses spell each exchange's protocol."""

    venue: ClassVar[str]
    asset_class: ClassVar[AssetClass] = AssetClass.CRYPTO

    def url(self, base: str, symbols: Sequence[str]) -> str:
        return base

    def opening(self, symbols: Sequence[str]) -> list[str]:
        """Messages to send, in order, once connected (auth, subscribe)."""
        return []

    def decode(self, raw: str | bytes) -> Frame:
        try:
            return self._decode(raw)
        except BadTradeError as exc:
            return Frame(rejected=[(exc.reason, exc.detail)])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return Frame(rejected=[("malformed", f"{type(exc).__name__}: {exc}"[:300])])

    def _decode(self, raw: str | bytes) -> Frame:
        raise NotImplementedError


_COINBASE_TAKER = {"sell": TradeSide.BUY, "buy": TradeSide.SELL}  # from the maker's side


class Coinbase(VenueProtocol):
    """Coinbase Exchange WebSocket feed: `matches` + `heartbeat` channels."""

    venue = "coinbase"

    def opening(self, symbols: Sequence[str]) -> list[str]:
        message = {
            "type": "subscribe",
            "product_ids": list(symbols),
            "channels": ["matches", "heartbeat"],
        }
        return [orjson.dumps(message).decode()]

    def _decode(self, raw: str | bytes) -> Frame:
        message = orjson.loads(raw)
        kind = message.get("type")
        if kind == "match" or kind == "last_match":
            trade_id = _int(message["trade_id"], name="trade_id")
            # `side` is the maker's side: a sell maker means the taker bought.
            side = _COINBASE_TAKER.get(message.get("side"), TradeSide.UNKNOWN)
            sequence = message.get("sequence")
            trade = WireTrade(
                venue_symbol=_str(message["product_id"], name="product_id"),
                trade_id=str(trade_id),
                number=trade_id,
                price_text=plain_decimal(message["price"], name="price"),
                size_text=plain_decimal(message["size"], name="size"),
                side=side,
                event_time=utc_iso(message["time"]),
                sequence=sequence if type(sequence) is int else None,  # not a bool
            )
            return Frame(trades=[trade])
        if kind == "error":
            return Frame(error=f"{message.get('message')}: {message.get('reason', '')}")
        if kind in ("heartbeat", "subscriptions"):
            return Frame(skipped="control")
        return Frame(skipped="unknown_type")


class Binance(VenueProtocol):
    """Binance Spot combined trade streams: `<base>?streams=btcusdt@trade/ethusdt@trade`.

    The server pings every 20 s and the client library answers each with a pong."""

    venue = "binance"

    def url(self, base: str, symbols: Sequence[str]) -> str:
        streams = "/".join(f"{s.lower()}@trade" for s in symbols)
        return f"{base}?streams={quote(streams, safe='/@')}"

    def _decode(self, raw: str | bytes) -> Frame:
        message = orjson.loads(raw)
        data = message.get("data", message) if isinstance(message, dict) else None
        if not isinstance(data, dict):
            return Frame(skipped="unknown_type")
        if data.get("e") == "trade":
            trade_id = _int(data["t"], name="t")
            trade = WireTrade(
                venue_symbol=_str(data["s"], name="s"),
                trade_id=str(trade_id),
                number=trade_id,
                price_text=plain_decimal(data["p"], name="price"),
                size_text=plain_decimal(data["q"], name="size"),
                # m: the buyer is the maker, so the taker sold.
                side=TradeSide.SELL if data.get("m") else TradeSide.BUY,
                event_time=utc_from_epoch_ms(_int(data["T"], name="T")),
            )
            return Frame(trades=[trade])
        if "code" in data and "msg" in data:
            return Frame(error=f"{data['code']}: {data['msg']}")
        if "result" in data and "id" in data:
            return Frame(skipped="control")
        return Frame(skipped="unknown_type")


class QuotedNumbers:
    """Parses JSON with the numbers of some fields turned into strings first, so that their
    exact digits reach `exact()` instead of a float (`json.loads(parse_float=Decimal)` does the
    same, 5-10x slower than orjson over a frame of 50 trades).

    The frame is split around each `"field": <number>` (parts: text, `"field":`, number, text…)
    and every third part quoted: 0.8 µs a trade where `re.sub` with a `\\2` template took 2.2
    (Python 3.11 expands a template's group references in Python, once per match).
    """

    def __init__(self, fields: Sequence[str]) -> None:
        names = b"|".join(re.escape(f.encode()) for f in fields)
        self._pattern = re.compile(rb'("(?:' + names + rb')"\s*:\s*)(-?[0-9][0-9.eE+-]*)')

    def loads(self, raw: str | bytes) -> Any:
        parts = self._pattern.split(raw.encode() if isinstance(raw, str) else raw)
        parts[2::3] = [b'"' + number + b'"' for number in parts[2::3]]
        return orjson.loads(b"".join(parts))


_SIDES = {"buy": TradeSide.BUY, "sell": TradeSide.SELL}


class Kraken(VenueProtocol):
    """Kraken WebSocket v2 `trade` channel (plus its 1 s `heartbeat`)."""

    venue = "kraken"
    _numbers = QuotedNumbers(("price", "qty"))

    def opening(self, symbols: Sequence[str]) -> list[str]:
        message = {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": list(symbols), "snapshot": False},
        }
        return [orjson.dumps(message).decode()]

    def _decode(self, raw: str | bytes) -> Frame:
        message = self._numbers.loads(raw)
        channel = message.get("channel")
        if channel == "trade":
            trades = []
            rejected = []
            for item in message["data"]:
                try:
                    trade_id = _int(item["trade_id"], name="trade_id")
                    trades.append(
                        WireTrade(
                            venue_symbol=_str(item["symbol"], name="symbol"),
                            trade_id=str(trade_id),
                            number=trade_id,
                            price_text=plain_decimal(item["price"], name="price"),
                            size_text=plain_decimal(item["qty"], name="size"),
                            side=_SIDES.get(item.get("side"), TradeSide.UNKNOWN),
                            event_time=utc_iso(item["timestamp"]),
                        )
                    )
                except BadTradeError as exc:  # one bad trade in a batch: the others still count
                    rejected.append((exc.reason, exc.detail))
            return Frame(trades=trades, rejected=rejected)
        if channel in ("heartbeat", "status") or message.get("method") in ("pong", "ping"):
            return Frame(skipped="control")
        if message.get("method") == "subscribe":
            if message.get("success") is False:
                return Frame(error=str(message.get("error", "subscribe failed")))
            return Frame(skipped="control")
        if "error" in message:
            return Frame(error=str(message["error"]))
        return Frame(skipped="unknown_type")


class Alpaca(VenueProtocol):
    """Alpaca market data stream v2 (IEX or SIP): `auth`, then `subscribe` to `trades`.

    Trade ids are per reporting exchange (`x`) and not consecutive: the id kept is `x-i`, and
    there is no gap detection."""

    venue = "alpaca"
    asset_class = AssetClass.EQUITY
    _numbers = QuotedNumbers(("p", "s"))

    def __init__(self, *, key_id: str, secret_key: str) -> None:
        self._key_id = key_id
        self._secret_key = secret_key

    def opening(self, symbols: Sequence[str]) -> list[str]:
        auth = {"action": "auth", "key": self._key_id, "secret": self._secret_key}
        subscribe = {"action": "subscribe", "trades": list(symbols)}
        return [orjson.dumps(auth).decode(), orjson.dumps(subscribe).decode()]

    def _decode(self, raw: str | bytes) -> Frame:
        messages = self._numbers.loads(raw)
        if not isinstance(messages, list):
            messages = [messages]
        trades: list[WireTrade] = []
        rejected: list[tuple[str, str]] = []
        frame = Frame(trades=trades, rejected=rejected)
        for item in messages:
            kind = item.get("T")
            if kind == "t":
                try:
                    trades.append(
                        WireTrade(
                            venue_symbol=_str(item["S"], name="S"),
                            trade_id=_alpaca_trade_id(item),
                            number=None,
                            price_text=plain_decimal(item["p"], name="price"),
                            size_text=plain_decimal(item["s"], name="size"),
                            side=TradeSide.UNKNOWN,
                            event_time=utc_iso(item["t"]),
                        )
                    )
                except BadTradeError as exc:
                    rejected.append((exc.reason, exc.detail))
            elif kind == "error":
                frame.error = f"{item.get('code')}: {item.get('msg')}"
            elif kind in ("success", "subscription"):
                frame.skipped = "control"
            else:
                frame.skipped = "unknown_type"
        return frame


def _alpaca_trade_id(item: dict[str, Any]) -> str:
    """`x-i`: on the consolidated (SIP) feed trade ids are unique per reporting exchange `x`
    only, so two exchanges' trade 42 are two trades."""
    trade_id = _int(item["i"], name="i")
    exchange = item.get("x")
    return f"{exchange}-{trade_id}" if isinstance(exchange, str) and exchange else str(trade_id)


def protocol_for(
    venue: str, *, alpaca_key_id: str = "", alpaca_secret_key: str = ""
) -> VenueProtocol:
    if venue == "coinbase":
        return Coinbase()
    if venue == "binance":
        return Binance()
    if venue == "kraken":
        return Kraken()
    if venue == "alpaca":
        return Alpaca(key_id=alpaca_key_id, secret_key=alpaca_secret_key)
    raise ValueError(f"unknown venue {venue!r}")
