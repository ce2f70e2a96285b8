"""An alert's labels: the flat name → value map that routes, groups, inhibitions and silences
match on. Pure."""

from __future__ import annotations

from contracts.events import AlertKind, AlertRaised

REVIEW_KINDS = frozenset({AlertKind.NEGATIVE_REVIEW, AlertKind.NEGATIVE_BURST})
MARKET_KINDS = frozenset({AlertKind.PRICE_MOVE, AlertKind.STALE_FEED})

# detail key (as cdc_processor writes it) → label name
_DETAIL_LABELS = {
    "product_sku": "sku",
    "product_brand": "brand",
    "product_category": "category",
    "asset_class": "asset_class",
}

LABEL_NAMES = frozenset(
    {"kind", "severity", "subject", "symbol", "alert_id", *_DETAIL_LABELS.values()}
)
"""Every label an alert can carry; a routing file naming another is rejected at start-up."""


def alert_labels(alert: AlertRaised) -> dict[str, str]:
    labels = {
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "subject": alert.subject,
        "alert_id": alert.alert_id,
    }
    if alert.kind in MARKET_KINDS:
        labels["symbol"] = alert.subject
    for detail, label in _DETAIL_LABELS.items():
        value = alert.details.get(detail)
        if value:
            labels[label] = value
    return labels
