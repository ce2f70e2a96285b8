"""Contract records the dashboard reads, built for tests and the dashboard benchmark."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.events import (
    AlertKind,
    AlertRaised,
    AlertSeverity,
    CandleClosed,
    CandleForming,
    ReviewEnriched,
    ReviewOp,
    SentimentLabel,
)
from contracts.rows import AssetClass

T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def asset_class(symbol: str) -> AssetClass:
    return AssetClass.CRYPTO if symbol.endswith("-USD") else AssetClass.EQUITY


def candle(
    symbol: str,
    minute: int,
    close: str,
    *,
    open_: str | None = None,
    volume: str = "10",
    start: datetime = T0,
    sma: str | None = None,
) -> CandleClosed:
    begin = start + timedelta(minutes=minute)
    c, o = Decimal(close), Decimal(open_ or close)
    return CandleClosed(
        symbol=symbol,
        asset_class=asset_class(symbol),
        window_start=begin,
        window_end=begin + timedelta(minutes=1),
        open=o,
        high=max(o, c) + 1,
        low=min(o, c) - 1,
        close=c,
        volume=Decimal(volume),
        vwap=(o + c) / 2,
        trade_count=5,
        sma=None if sma is None else Decimal(sma),
        sma_period=5,
        ema=c,
        ema_period=9,
        event_time=begin,
        emitted_at=begin + timedelta(minutes=1, seconds=5),
    )


def forming(
    symbol: str, minute: int, close: str, *, trades: int = 3, start: datetime = T0
) -> CandleForming:
    begin = start + timedelta(minutes=minute)
    c = Decimal(close)
    return CandleForming(
        symbol=symbol,
        asset_class=asset_class(symbol),
        window_start=begin,
        window_end=begin + timedelta(minutes=1),
        open=c,
        high=c,
        low=c,
        close=c,
        volume=Decimal(trades),
        vwap=c,
        trade_count=trades,
        event_time=begin + timedelta(seconds=trades),
        emitted_at=begin + timedelta(seconds=trades),
    )


def alert(
    subject: str,
    *,
    kind: AlertKind = AlertKind.PRICE_MOVE,
    severity: AlertSeverity = AlertSeverity.WARNING,
    message: str = "moved 8 % in 5 minutes",
    at: datetime = T0,
    window_end: datetime | None = None,
) -> AlertRaised:
    return AlertRaised(
        alert_id=uuid.uuid4().hex,
        kind=kind,
        subject=subject,
        severity=severity,
        message=message,
        event_time=at,
        window_start=None if window_end is None else at,
        window_end=window_end,
        raised_at=at,
    )


def review(
    sku: str,
    rating: int,
    *,
    review_id: str | None = None,
    score: float | None = None,
    body: str = "It leaks. Contact [EMAIL] for a refund.",
    op: ReviewOp = ReviewOp.UPSERT,
    at: datetime = T0,
) -> ReviewEnriched:
    score = score if score is not None else (-0.8 if rating <= 2 else 0.6)
    return ReviewEnriched(
        review_id=review_id or uuid.uuid4().hex,
        op=op,
        source="app",
        dedup_key=uuid.uuid4().hex,
        product_id=1,
        product_sku=sku,
        product_name=f"Product {sku}",
        product_known=True,
        rating=rating,
        title="Leaks" if rating <= 2 else "Fine",
        body=body,
        sentiment_score=score,
        sentiment_label=SentimentLabel.NEGATIVE if score < -0.05 else SentimentLabel.POSITIVE,
        event_time=at,
        enriched_at=at,
    )
