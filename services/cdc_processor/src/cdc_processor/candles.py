"""Per-symbol 1-minute OHLCV candles on event time, with SMA, EMA and VWAP. Pure.

State is a plain JSON-able dict so it can live in a changelog-backed table; decimals are
kept as strings and quantized to `DECIMAL_SCALE` when computed. A window closes when the
symbol's watermark (max event time seen) passes its end plus the grace period; a tick for a
closed window is `late`. Each tick carries its source position (topic, partition, offset):
the state remembers the highest one per source partition, so an at-least-once redelivery
after a restart is skipped instead of being counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from enum import StrEnum
from typing import Any

from contracts.events import CandleClosed, CandleForming
from contracts.identity import candle_event_id, forming_candle_event_id
from contracts.rows import AssetClass
from contracts.types import DECIMAL_SCALE

from cdc_processor.decoding import Tick

WINDOW = timedelta(minutes=1)
_Prices = tuple[Decimal, Decimal, Decimal]  # close, volume, VWAP
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
RECENT_TICK_IDS = 64  # duplicate ticks (a quote polled twice) arrive close together


# Enough digits that DECIMAL(38,18) products and sums never round before the final quantize.
_EXACT = Context(prec=80)


def q(value: Decimal) -> Decimal:
    return value.quantize(_QUANTUM, context=_EXACT)


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REDELIVERED = "redelivered"  # seen before this restart: skip silently
    LATE = "late"
    DUPLICATE = "duplicate"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class CandleConfig:
    grace: timedelta
    sma_period: int
    ema_period: int


@dataclass(slots=True)
class TickResult:
    verdict: Verdict
    closed: list[CandleClosed] = field(default_factory=list)
    detail: str = ""


def new_state() -> dict[str, Any]:
    return {
        "positions": {},  # "topic:partition" → highest offset applied
        "open": {},  # window start epoch seconds (str) → aggregate
        "watermark": None,  # max event time seen, epoch microseconds
        "closed_through": None,  # end of the last closed window, epoch seconds
        "closes": [],  # last max(sma, ema) closes, oldest first
        "ema": None,
        "recent_ids": [],
        "asset_class": None,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_WINDOW_US = WINDOW // _MICROSECOND
_WINDOW_S = _WINDOW_US // 1_000_000


def _epoch_us(ts: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (no float rounding)."""
    return (ts - _EPOCH) // _MICROSECOND


def _from_epoch_s(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _window_start_s(epoch_us: int) -> int:
    return epoch_us // _WINDOW_US * _WINDOW_S


def window_start(ts: datetime) -> datetime:
    """Start of the 1-minute window holding `ts` (UTC)."""
    return _from_epoch_s(_window_start_s(_epoch_us(ts)))


def apply_tick(
    state: dict[str, Any],
    tick: Tick,
    *,
    position: tuple[str, int, int],
    config: CandleConfig,
    now: datetime,
) -> TickResult:
    """Apply one tick to `state` in place; returns the verdict and any candles it closed.

    The hot path runs once per tick: integer epoch arithmetic for windows, and the two
    decimal operations (p×v, sums) through the 80-digit context explicitly, so nothing here
    rounds before the quantize at close.
    """
    topic, partition, offset = position
    source = f"{topic}:{partition}"
    positions: dict[str, int] = state["positions"]
    if positions.get(source, -1) >= offset:
        return TickResult(Verdict.REDELIVERED)
    positions[source] = offset  # every verdict below consumes this position
    price, size = tick.price, tick.size
    if price <= 0 or size < 0:
        return TickResult(Verdict.INVALID, detail=f"price {price} size {size}")
    recent: list[str] = state["recent_ids"]
    if tick.tick_id in recent:
        return TickResult(Verdict.DUPLICATE, detail=f"tick {tick.tick_id} seen")
    ts = _epoch_us(tick.event_time)
    start_s = _window_start_s(ts)
    closed_through = state["closed_through"]
    if closed_through is not None and start_s < closed_through:
        start = _from_epoch_s(start_s).isoformat()
        return TickResult(Verdict.LATE, detail=f"window {start} already closed")
    recent.append(tick.tick_id)
    if len(recent) > RECENT_TICK_IDS:
        del recent[: len(recent) - RECENT_TICK_IDS]
    state["asset_class"] = tick.asset_class.value
    key = str(start_s)
    opened: dict[str, Any] = state["open"]
    agg = opened.get(key)
    if agg is None:
        text = str(price)
        opened[key] = {
            "o": text,
            "h": text,
            "l": text,
            "c": text,
            "ot": ts,
            "ct": ts,
            "v": str(size),
            "pv": str(_EXACT.multiply(price, size)),
            "n": 1,
        }
    else:
        if ts < agg["ot"]:
            agg["o"], agg["ot"] = str(price), ts
        if ts >= agg["ct"]:
            agg["c"], agg["ct"] = str(price), ts
        if price > Decimal(agg["h"]):
            agg["h"] = str(price)
        if price < Decimal(agg["l"]):
            agg["l"] = str(price)
        agg["v"] = str(_EXACT.add(Decimal(agg["v"]), size))
        agg["pv"] = str(_EXACT.add(Decimal(agg["pv"]), _EXACT.multiply(price, size)))
        agg["n"] += 1
    watermark = state["watermark"]
    if watermark is None or ts > watermark:
        state["watermark"] = watermark = ts
    # Fast exit: nothing can close while the oldest open window ends after the horizon.
    horizon_us = watermark - config.grace // _MICROSECOND
    if (min(map(int, opened)) + _WINDOW_S) * 1_000_000 > horizon_us:
        return TickResult(Verdict.ACCEPTED)
    return TickResult(
        Verdict.ACCEPTED, closed=close_due(state, tick.symbol, config=config, now=now)
    )


def close_due(
    state: dict[str, Any], symbol: str, *, config: CandleConfig, now: datetime
) -> list[CandleClosed]:
    """Close every open window whose end + grace the watermark has passed, oldest first."""
    with localcontext(_EXACT):
        return _close_due(state, symbol, config=config, now=now)


def _close_due(
    state: dict[str, Any], symbol: str, *, config: CandleConfig, now: datetime
) -> list[CandleClosed]:
    if state["watermark"] is None:
        return []
    horizon_us = state["watermark"] - config.grace // _MICROSECOND
    closed: list[CandleClosed] = []
    for key in sorted(state["open"], key=int):
        start_s = int(key)
        if (start_s + _WINDOW_S) * 1_000_000 > horizon_us:
            break
        agg = state["open"].pop(key)
        closed.append(_close(state, symbol, start_s, agg, config=config, now=now))
        state["closed_through"] = start_s + _WINDOW_S
    return closed


def _close(
    state: dict[str, Any],
    symbol: str,
    start_s: int,
    agg: dict[str, Any],
    *,
    config: CandleConfig,
    now: datetime,
) -> CandleClosed:
    close, volume, vwap = _prices(agg)
    closes: list[str] = state["closes"]
    closes.append(str(close))
    keep = max(config.sma_period, config.ema_period)
    if len(closes) > keep:
        del closes[: len(closes) - keep]
    sma = None
    if len(closes) >= config.sma_period:
        window = [Decimal(c) for c in closes[-config.sma_period :]]
        sma = q(sum(window, Decimal(0)) / config.sma_period)
    # EMA seeded with the first close; alpha = 2 / (period + 1), exact decimal arithmetic.
    alpha = Decimal(2) / Decimal(config.ema_period + 1)
    previous = state["ema"]
    ema = close if previous is None else alpha * close + (1 - alpha) * Decimal(previous)
    ema = q(ema)
    state["ema"] = str(ema)
    start = _from_epoch_s(start_s)
    values = (agg["o"], agg["h"], agg["l"], close, volume, agg["n"])
    return CandleClosed(
        event_id=candle_event_id(symbol, start, values=values),
        **_window(symbol, state["asset_class"], start, agg, (close, volume, vwap)),
        sma=sma,
        sma_period=config.sma_period,
        ema=ema,
        ema_period=config.ema_period,
        event_time=start,
        emitted_at=now,
    )


def _prices(agg: dict[str, Any]) -> _Prices:
    """A window's close, volume and VWAP (the close when it has no volume), in the caller's
    decimal context."""
    close = Decimal(agg["c"])
    volume = Decimal(agg["v"])
    return close, volume, Decimal(agg["pv"]) / volume if volume > 0 else close


def _window(
    symbol: str, asset_class: str, start: datetime, agg: dict[str, Any], prices: _Prices
) -> dict[str, Any]:
    """The fields a closed and a forming candle share: the window and its OHLCV, rounded."""
    close, volume, vwap = prices
    return {
        "symbol": symbol,
        "asset_class": AssetClass(asset_class),
        "window_start": start,
        "window_end": start + WINDOW,
        "open": q(Decimal(agg["o"])),
        "high": q(Decimal(agg["h"])),
        "low": q(Decimal(agg["l"])),
        "close": q(close),
        "volume": q(volume),
        "vwap": q(vwap),
        "trade_count": agg["n"],
    }


def forming(state: dict[str, Any], symbol: str, *, now: datetime) -> CandleForming | None:
    """The newest open window of `state` as a forming candle (None when nothing is open).

    Same arithmetic as a close (`_close`), without the indicators, which only closed candles
    carry; the dashboard shows the price move from these and the indicators from closes.
    """
    opened: dict[str, Any] = state["open"]
    if not opened:
        return None
    start_s = max(map(int, opened))
    agg = opened[str(start_s)]
    with localcontext(_EXACT):
        close, volume, vwap = _prices(agg)
    start = _from_epoch_s(start_s)
    values = (agg["o"], agg["h"], agg["l"], close, volume, agg["n"])
    return CandleForming(
        event_id=forming_candle_event_id(symbol, start, values=values),
        **_window(symbol, state["asset_class"], start, agg, (close, volume, vwap)),
        event_time=_EPOCH + agg["ct"] * _MICROSECOND,
        emitted_at=now,
    )
