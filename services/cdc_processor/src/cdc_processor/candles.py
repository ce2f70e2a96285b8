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

from contracts.events import CandleClosed
from contracts.rows import AssetClass
from contracts.types import DECIMAL_SCALE

from cdc_processor.decoding import Tick

WINDOW = timedelta(minutes=1)
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


def window_start(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(second=0, microsecond=0)


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


def _epoch_us(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_epoch_s(seconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def apply_tick(
    state: dict[str, Any],
    tick: Tick,
    *,
    position: tuple[str, int, int],
    config: CandleConfig,
    now: datetime,
) -> TickResult:
    """Apply one tick to `state` in place; returns the verdict and any candles it closed."""
    with localcontext(_EXACT):
        return _apply(state, tick, position=position, config=config, now=now)


def _apply(
    state: dict[str, Any],
    tick: Tick,
    *,
    position: tuple[str, int, int],
    config: CandleConfig,
    now: datetime,
) -> TickResult:
    topic, partition, offset = position
    source = f"{topic}:{partition}"
    positions: dict[str, int] = state["positions"]
    if positions.get(source, -1) >= offset:
        return TickResult(Verdict.REDELIVERED)
    positions[source] = offset  # every verdict below consumes this position
    if tick.price <= 0 or tick.size < 0:
        return TickResult(Verdict.INVALID, detail=f"price {tick.price} size {tick.size}")
    if tick.tick_id in state["recent_ids"]:
        return TickResult(Verdict.DUPLICATE, detail=f"tick {tick.tick_id} seen")
    start = window_start(tick.event_time)
    start_s = _epoch_us(start) // 1_000_000
    closed_through = state["closed_through"]
    if closed_through is not None and start_s < closed_through:
        return TickResult(Verdict.LATE, detail=f"window {start.isoformat()} already closed")
    recent: list[str] = state["recent_ids"]
    recent.append(tick.tick_id)
    if len(recent) > RECENT_TICK_IDS:
        del recent[: len(recent) - RECENT_TICK_IDS]
    state["asset_class"] = tick.asset_class.value
    key = str(start_s)
    price, size = tick.price, tick.size
    agg = state["open"].get(key)
    if agg is None:
        state["open"][key] = {
            "o": str(price),
            "h": str(price),
            "l": str(price),
            "c": str(price),
            "ot": _epoch_us(tick.event_time),
            "ct": _epoch_us(tick.event_time),
            "v": str(size),
            "pv": str(price * size),
            "n": 1,
        }
    else:
        ts = _epoch_us(tick.event_time)
        if ts < agg["ot"]:
            agg["o"], agg["ot"] = str(price), ts
        if ts >= agg["ct"]:
            agg["c"], agg["ct"] = str(price), ts
        if price > Decimal(agg["h"]):
            agg["h"] = str(price)
        if price < Decimal(agg["l"]):
            agg["l"] = str(price)
        agg["v"] = str(Decimal(agg["v"]) + size)
        agg["pv"] = str(Decimal(agg["pv"]) + price * size)
        agg["n"] += 1
    watermark = max(state["watermark"] or 0, _epoch_us(tick.event_time))
    state["watermark"] = watermark
    return TickResult(
        Verdict.ACCEPTED, closed=_close_due(state, tick.symbol, config=config, now=now)
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
    horizon_us = state["watermark"] - int(config.grace.total_seconds() * 1_000_000)
    window_s = int(WINDOW.total_seconds())
    closed: list[CandleClosed] = []
    for key in sorted(state["open"], key=int):
        start_s = int(key)
        if (start_s + window_s) * 1_000_000 > horizon_us:
            break
        agg = state["open"].pop(key)
        closed.append(_close(state, symbol, start_s, agg, config=config, now=now))
        state["closed_through"] = start_s + window_s
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
    close = Decimal(agg["c"])
    volume = Decimal(agg["v"])
    vwap = Decimal(agg["pv"]) / volume if volume > 0 else close
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
    return CandleClosed(
        symbol=symbol,
        asset_class=AssetClass(state["asset_class"]),
        window_start=start,
        window_end=start + WINDOW,
        open=q(Decimal(agg["o"])),
        high=q(Decimal(agg["h"])),
        low=q(Decimal(agg["l"])),
        close=q(close),
        volume=q(volume),
        vwap=q(vwap),
        trade_count=agg["n"],
        sma=sma,
        sma_period=config.sma_period,
        ema=ema,
        ema_period=config.ema_period,
        event_time=start,
        emitted_at=now,
    )
