"""What people read: a title and a text body per notification (Apprise), and the JSON body of
the signed webhook. Pure.

A review alert shows the product, rating, sentiment and the scrubbed excerpt the stream wrote;
never the author (cdc_processor puts no identity in an alert). A market alert shows the symbol,
the move, its window and the price. Each links to the dashboard view when one is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
from contracts.events import AlertKind, AlertRaised

_KIND_TITLES = {
    AlertKind.NEGATIVE_REVIEW: "Negative review",
    AlertKind.NEGATIVE_BURST: "Burst of negative reviews",
    AlertKind.PRICE_MOVE: "Price move",
    AlertKind.STALE_FEED: "Stale market feed",
}
WEBHOOK_EVENT_TYPE = "pulse.alerts.notification"


def dashboard_link(alert: AlertRaised, *, dashboard_url: str | None) -> str | None:
    """The dashboard view for this alert (`#/reviews`, `#/markets/<symbol>`), if any."""
    if not dashboard_url:
        return None
    base = dashboard_url.rstrip("/") + "/"
    if alert.kind in (AlertKind.NEGATIVE_REVIEW, AlertKind.NEGATIVE_BURST):
        return f"{base}#/reviews"
    if alert.kind in (AlertKind.PRICE_MOVE, AlertKind.STALE_FEED):
        return f"{base}#/markets/{quote(alert.subject, safe='')}"
    return f"{base}#/alerts"


def _product(details: Mapping[str, str], subject: str) -> str:
    name, sku = details.get("product_name"), details.get("product_sku")
    if name and sku:
        return f"{name} ({sku})"
    return name or sku or subject


def _when(moment: datetime | None) -> str:
    """`2026-12-07 16:20:05 UTC` (alerts carry UTC times; isoformat is faster than strftime)."""
    return f"{moment.isoformat(sep=' ', timespec='seconds')[:19]} UTC" if moment else "?"


def alert_summary(alert: AlertRaised) -> str:
    """One line naming what happened."""
    d = alert.details
    if alert.kind is AlertKind.NEGATIVE_REVIEW:
        rating = f"rated {d['rating']}/5" if d.get("rating") else "unrated"
        sentiment = d.get("sentiment_label") or "?"
        score = f" {float(d['sentiment_score']):+.2f}" if d.get("sentiment_score") else ""
        return f"{_product(d, alert.subject)} {rating}, sentiment {sentiment}{score}"
    if alert.kind is AlertKind.NEGATIVE_BURST:
        window = ""
        if alert.window_start and alert.window_end:
            window = f" in {int((alert.window_end - alert.window_start).total_seconds())} s"
        count = d.get("count", "?")
        return f"{_product(d, alert.subject)}: {count} negative reviews{window}"
    if alert.kind is AlertKind.PRICE_MOVE:
        move = f"{float(d['move_pct']):+.2f}%" if d.get("move_pct") else "?"
        window = f" over {int(d['window_s']) // 60} min" if d.get("window_s") else ""
        return (
            f"{alert.subject} {move}{window}: {d.get('from', '?')} → {d.get('to', '?')}"
            f" (to {_when(alert.window_end)})"
        )
    if alert.kind is AlertKind.STALE_FEED:
        return f"{alert.subject}: no tick since {d.get('last_event_time', '?')}"
    return alert.message


def alert_text(alert: AlertRaised, *, dashboard_url: str | None, summary: str | None = None) -> str:
    lines = [f"[{alert.severity.value.upper()}] {summary or alert_summary(alert)}"]
    excerpt = alert.details.get("excerpt")
    if alert.kind is AlertKind.NEGATIVE_REVIEW and excerpt:
        lines.append(f'  "{excerpt}"')
    lines.append(f"  at {_when(alert.event_time)}")
    link = dashboard_link(alert, dashboard_url=dashboard_url)
    if link:
        lines.append(f"  {link}")
    return "\n".join(lines)


def title(alerts: Sequence[AlertRaised], *, summary: str | None = None) -> str:
    """`summary`: the first alert's `alert_summary`, when the caller has it already."""
    first = alerts[0]
    if len(alerts) == 1:
        what = _KIND_TITLES.get(first.kind, first.kind.value)
        return f"[{first.severity.value.upper()}] {what}: {summary or alert_summary(first)}"
    severity = max((a.severity for a in alerts), key=_severity_rank).value.upper()
    kinds = {a.kind for a in alerts}
    what = _KIND_TITLES.get(first.kind, first.kind.value) if len(kinds) == 1 else "Alerts"
    return f"[{severity}] {len(alerts)} × {what}: {_product(first.details, first.subject)}"


_SEVERITY_RANKS = {"info": 0, "warning": 1, "critical": 2}


def _severity_rank(severity: Any) -> int:
    return _SEVERITY_RANKS.get(str(severity), 0)


def text_body(alerts: Sequence[AlertRaised], *, dashboard_url: str | None) -> str:
    return "\n\n".join(alert_text(a, dashboard_url=dashboard_url) for a in alerts)


def _payload_head(
    alerts: Sequence[AlertRaised],
    summaries: Sequence[str],
    *,
    notification_id: str,
    receiver: str,
    group_labels: Mapping[str, str],
    timestamp: datetime,
    dashboard_url: str | None,
) -> dict[str, Any]:
    """The webhook body without its `data.alerts` (`summaries`: one per alert, made once)."""
    return {
        "type": WEBHOOK_EVENT_TYPE,
        "timestamp": timestamp.isoformat(),
        "data": {
            "notification_id": notification_id,
            "receiver": receiver,
            "group_labels": dict(group_labels),
            "title": title(alerts, summary=summaries[0]),
            "text": "\n\n".join(
                alert_text(alert, dashboard_url=dashboard_url, summary=summary)
                for alert, summary in zip(alerts, summaries, strict=True)
            ),
        },
    }


def webhook_body(
    alerts: Sequence[AlertRaised],
    *,
    published: Sequence[bytes] = (),
    notification_id: str,
    receiver: str,
    group_labels: Mapping[str, str],
    timestamp: datetime,
    dashboard_url: str | None,
) -> bytes:
    """`webhook_payload` as JSON bytes, built for the send path: each alert is the record as
    published on alerts.v1 (`published`, parallel to `alerts`; the contract's own serializer
    made those bytes) with `summary` and `link` spliced in before its closing brace, instead
    of a model_dump of every alert and a dump of the whole tree. An alert without its bytes,
    or with bytes that do not end an object, is serialized from the model."""
    summaries = [alert_summary(alert) for alert in alerts]
    head = orjson.dumps(
        _payload_head(
            alerts,
            summaries,
            notification_id=notification_id,
            receiver=receiver,
            group_labels=group_labels,
            timestamp=timestamp,
            dashboard_url=dashboard_url,
        )
    )
    entries = []
    for n, alert in enumerate(alerts):
        raw = published[n].rstrip() if n < len(published) else b""
        if not (raw.startswith(b"{") and raw.endswith(b"}")):
            raw = type(alert).__pydantic_serializer__.to_json(alert)
        extra = orjson.dumps(
            {"summary": summaries[n], "link": dashboard_link(alert, dashboard_url=dashboard_url)}
        )
        entries.append(raw[:-1] + b"," + extra[1:])
    # head ends with the closing braces of "data" and of the body: the alerts go before them
    return head[:-2] + b',"alerts":[' + b",".join(entries) + b"]}}"


def webhook_payload(
    alerts: Sequence[AlertRaised],
    *,
    notification_id: str,
    receiver: str,
    group_labels: Mapping[str, str],
    timestamp: datetime,
    dashboard_url: str | None,
) -> dict[str, Any]:
    """The webhook's JSON body, in the Standard Webhooks shape (`type`, `timestamp`, `data`)."""
    summaries = [alert_summary(alert) for alert in alerts]  # each used three times
    payload = _payload_head(
        alerts,
        summaries,
        notification_id=notification_id,
        receiver=receiver,
        group_labels=group_labels,
        timestamp=timestamp,
        dashboard_url=dashboard_url,
    )
    payload["data"]["alerts"] = [
        {
            **alert.model_dump(mode="json"),
            "summary": summary,
            "link": dashboard_link(alert, dashboard_url=dashboard_url),
        }
        for alert, summary in zip(alerts, summaries, strict=True)
    ]
    return payload
