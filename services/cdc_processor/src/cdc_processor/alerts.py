"""Alert rules: negative review, negative burst per product, price move, stale feed. Pure.

Alert ids are hashes of kind, subject and the triggering record or window, so a replay of
the same input raises the same ids and consumers can deduplicate on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts.events import (
    AlertKind,
    AlertRaised,
    AlertSeverity,
    CandleClosed,
    ReviewEnriched,
    ReviewOp,
)
from contracts.identity import alert_event_id


def alert_id(kind: AlertKind, subject: str, trigger: str) -> str:
    return hashlib.sha256(f"{kind.value}\x1f{subject}\x1f{trigger}".encode()).hexdigest()[:32]


def review_subject(review: ReviewEnriched) -> str:
    """`product:<id>` whenever the id is known (app reviews always carry it, joined or not),
    so a product's burst state and alert keys do not split before and after its join."""
    if review.product_id is not None:
        return f"product:{review.product_id}"
    if review.product_sku:
        return f"sku:{review.product_sku}"
    return "product:unknown"


@dataclass(frozen=True, slots=True)
class ReviewAlertConfig:
    negative_rating_max: int
    negative_text_score: float
    burst_window: timedelta
    burst_threshold: int


EXCERPT_CHARS = 280  # enough to act on in a chat message, short enough for a notification


def product_details(review: ReviewEnriched) -> dict[str, str]:
    """The product fields a notifier routes on (SKU, brand, category) and shows (name)."""
    fields = {
        "product_sku": review.product_sku,
        "product_name": review.product_name,
        "product_brand": review.product_brand,
        "product_category": review.product_category,
    }
    return {name: value for name, value in fields.items() if value}


def review_excerpt(review: ReviewEnriched) -> str:
    """The scrubbed title and body, cut to EXCERPT_CHARS: never the author's identity."""
    text = " — ".join(part for part in (review.title, review.body) if part)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def is_negative(review: ReviewEnriched, config: ReviewAlertConfig) -> bool:
    if review.op is not ReviewOp.UPSERT:
        return False
    if review.rating is not None and review.rating <= config.negative_rating_max:
        return True
    return review.sentiment_score is not None and (
        review.sentiment_score <= config.negative_text_score
    )


def negative_review_alert(
    review: ReviewEnriched, config: ReviewAlertConfig, *, now: datetime
) -> AlertRaised | None:
    if not is_negative(review, config):
        return None
    subject = review_subject(review)
    severity = AlertSeverity.CRITICAL if review.rating == 1 else AlertSeverity.WARNING
    return _alert(
        alert_id=alert_id(AlertKind.NEGATIVE_REVIEW, subject, review.review_id),
        kind=AlertKind.NEGATIVE_REVIEW,
        subject=subject,
        severity=severity,
        message=f"negative review {review.review_id} on {subject}",
        event_time=review.event_time,
        details={
            "review_id": review.review_id,
            "rating": "" if review.rating is None else str(review.rating),
            "sentiment_score": ""
            if review.sentiment_score is None
            else str(review.sentiment_score),
            "sentiment_label": "" if review.sentiment_label is None else review.sentiment_label,
            "excerpt": review_excerpt(review),
            **product_details(review),
        },
        raised_at=now,
    )


def new_burst_state() -> dict[str, Any]:
    return {"reviews": {}, "in_burst": False}


def observe_negative(
    state: dict[str, Any],
    review: ReviewEnriched,
    config: ReviewAlertConfig,
    *,
    now: datetime,
) -> AlertRaised | None:
    """Count a negative review in its product's sliding window (in place).

    One alert when the count first reaches the threshold; no more until the window drops
    below it again. A review counts once, however often it is redelivered or updated.
    """
    reviews: dict[str, float] = state["reviews"]
    at = review.event_time.timestamp()
    reviews.setdefault(review.review_id, at)
    newest = max(reviews.values())
    horizon = newest - config.burst_window.total_seconds()
    for rid in [rid for rid, ts in reviews.items() if ts < horizon]:
        del reviews[rid]
    # Only whether `threshold` of them fall in the window matters: keep the newest that many,
    # so a product's state (one changelog record) stays small however hot its burst runs.
    surplus = len(reviews) - config.burst_threshold
    if surplus > 0:
        for rid, _ts in sorted(reviews.items(), key=lambda item: (item[1], item[0]))[:surplus]:
            del reviews[rid]
    if len(reviews) < config.burst_threshold:
        state["in_burst"] = False
        return None
    if state["in_burst"]:
        return None
    state["in_burst"] = True
    first_id, first_at = min(reviews.items(), key=lambda item: (item[1], item[0]))
    subject = review_subject(review)
    start = datetime.fromtimestamp(first_at, tz=UTC)
    end = datetime.fromtimestamp(newest, tz=UTC)
    return _alert(
        alert_id=alert_id(AlertKind.NEGATIVE_BURST, subject, f"{first_id}@{first_at}"),
        kind=AlertKind.NEGATIVE_BURST,
        subject=subject,
        severity=AlertSeverity.CRITICAL,
        message=f"{len(reviews)} negative reviews on {subject} within "
        f"{int(config.burst_window.total_seconds())}s",
        event_time=end,
        window_start=start,
        window_end=end,
        details={
            "count": str(len(reviews)),
            "threshold": str(config.burst_threshold),
            **product_details(review),
        },
        raised_at=now,
    )


@dataclass(frozen=True, slots=True)
class MarketAlertConfig:
    move_pct: Decimal
    move_window: timedelta
    stale_after: timedelta


def observe_candle(
    state: dict[str, Any], candle: CandleClosed, config: MarketAlertConfig, *, now: datetime
) -> AlertRaised | None:
    """Price move of at least `move_pct` % between this close and any close within the window.

    `state["moves"]` holds [window_start_s, close] pairs. After an alert the history restarts
    from this candle, so a continuing trend needs another full move to alert again.
    """
    history: list[list[Any]] = state.setdefault("moves", [])
    start_s = int(candle.window_start.timestamp())
    horizon = start_s - int(config.move_window.total_seconds())
    history[:] = [h for h in history if h[0] >= horizon and h[0] < start_s]
    best: tuple[Decimal, int, Decimal] | None = None
    for then_s, then_close in history:
        reference = Decimal(then_close)
        if reference <= 0:
            continue
        move = (candle.close - reference) / reference * 100
        if best is None or abs(move) > abs(best[0]):
            best = (move, then_s, reference)
    history.append([start_s, str(candle.close)])
    if best is None or abs(best[0]) < config.move_pct:
        return None
    history[:] = [[start_s, str(candle.close)]]
    move, then_s, reference = best
    since = datetime.fromtimestamp(then_s, tz=UTC)
    return _alert(
        alert_id=alert_id(AlertKind.PRICE_MOVE, candle.symbol, str(start_s)),
        kind=AlertKind.PRICE_MOVE,
        subject=candle.symbol,
        severity=AlertSeverity.WARNING,
        message=f"{candle.symbol} moved {move:+.2f}% since {since.isoformat()}",
        event_time=candle.window_end,
        window_start=since,
        window_end=candle.window_end,
        details={
            "move_pct": f"{move:.4f}",
            "from": format(reference, "f"),
            "to": format(candle.close, "f"),
            "asset_class": candle.asset_class,
            "window_s": str(int((candle.window_end - since).total_seconds())),
        },
        raised_at=now,
    )


def stale_alert(
    symbol: str, *, last_event_time: datetime, silent_for: timedelta, now: datetime
) -> AlertRaised:
    """A feed with no tick for `silent_for`; id from the last tick so it fires once per gap."""
    return _alert(
        alert_id=alert_id(AlertKind.STALE_FEED, symbol, last_event_time.isoformat()),
        kind=AlertKind.STALE_FEED,
        subject=symbol,
        severity=AlertSeverity.WARNING,
        message=f"no tick for {symbol} in {int(silent_for.total_seconds())}s",
        event_time=now,
        details={"last_event_time": last_event_time.isoformat()},
        raised_at=now,
    )


class StaleFeedWatch:
    """Wall-clock silence per symbol; raises once per gap (in memory: a restart may re-raise
    the same alert id, which consumers deduplicate)."""

    def __init__(self, *, stale_after: timedelta) -> None:
        self._stale_after = stale_after
        self._last: dict[str, tuple[float, datetime]] = {}
        self._raised: set[str] = set()

    def seen(self, symbol: str, *, event_time: datetime, monotonic: float) -> None:
        self._last[symbol] = (monotonic, event_time)
        self._raised.discard(symbol)

    def due(self, *, monotonic: float, now: datetime) -> list[AlertRaised]:
        alerts = []
        for symbol, (seen_at, event_time) in self._last.items():
            silent = monotonic - seen_at
            if silent >= self._stale_after.total_seconds() and symbol not in self._raised:
                self._raised.add(symbol)
                alerts.append(
                    stale_alert(
                        symbol,
                        last_event_time=event_time,
                        silent_for=timedelta(seconds=silent),
                        now=now,
                    )
                )
        return alerts


def _alert(**fields: Any) -> AlertRaised:
    """An AlertRaised whose `event_id` follows from its `alert_id` (contracts.identity)."""
    return AlertRaised(event_id=alert_event_id(fields["alert_id"]), **fields)
