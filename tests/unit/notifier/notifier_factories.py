"""Alerts for the notifier's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.events import AlertKind, AlertRaised, AlertSeverity

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def review_alert(n: int = 1, *, subject: str = "product:1", **details: str) -> AlertRaised:
    base = {
        "review_id": f"r{n}",
        "rating": "1",
        "sentiment_score": "-0.7",
        "sentiment_label": "negative",
        "excerpt": "The lid broke on day two",
        "product_sku": "KTL-100",
        "product_name": "Kettle",
        "product_brand": "Acme",
        "product_category": "kitchen",
    }
    return AlertRaised(
        alert_id=f"review-{subject}-{n}",
        kind=AlertKind.NEGATIVE_REVIEW,
        subject=subject,
        severity=AlertSeverity.CRITICAL,
        message=f"negative review r{n} on {subject}",
        event_time=T0,
        details={**base, **details},
        raised_at=T0,
    )


def burst_alert(*, subject: str = "product:1") -> AlertRaised:
    return AlertRaised(
        alert_id=f"burst-{subject}",
        kind=AlertKind.NEGATIVE_BURST,
        subject=subject,
        severity=AlertSeverity.CRITICAL,
        message=f"5 negative reviews on {subject} within 600s",
        event_time=T0,
        window_start=T0,
        window_end=T0,
        details={
            "count": "5",
            "threshold": "5",
            "product_sku": "KTL-100",
            "product_name": "Kettle",
        },
        raised_at=T0,
    )


def move_alert(symbol: str = "BTC-USD", **overrides: Any) -> AlertRaised:
    fields: dict[str, Any] = {
        "alert_id": f"move-{symbol}",
        "kind": AlertKind.PRICE_MOVE,
        "subject": symbol,
        "severity": AlertSeverity.WARNING,
        "message": f"{symbol} moved",
        "event_time": T0,
        "window_start": T0,
        "window_end": T0,
        "details": {
            "move_pct": "-5.2500",
            "from": "70000",
            "to": "66325",
            "asset_class": "crypto",
            "window_s": "300",
        },
        "raised_at": T0,
    }
    fields.update(overrides)
    return AlertRaised(**fields)
