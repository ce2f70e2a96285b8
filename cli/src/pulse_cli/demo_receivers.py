"""`make demo`'s local receivers: the signed webhook and the SMTP server the notifier started by
`pulse up` delivers to (ports in pulse_cli.processes), and what the demo checks of them.

The webhook runs on its own event loop in a thread (the demo calls asyncio.run several times);
aiosmtpd's controller has its own thread already.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifier.sinks import Mail, Received, SmtpSink, WebhookSink

from pulse_cli import processes


@dataclass(frozen=True, slots=True)
class Receivers:
    webhook: WebhookSink
    smtp: SmtpSink


@contextmanager
def local_receivers(root: Path) -> Iterator[Receivers]:
    """Start both receivers; stop them on exit. The webhook checks signatures with the
    secret `pulse up` gave the notifier."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-webhook", daemon=True)
    thread.start()
    webhook = WebhookSink(
        port=processes.DEMO_WEBHOOK_PORT, secret=processes.notifier_webhook_secret(root)
    )
    asyncio.run_coroutine_threadsafe(webhook.start(), loop).result(timeout=10)
    smtp = SmtpSink(port=processes.DEMO_SMTP_PORT)
    smtp.start()
    try:
        yield Receivers(webhook, smtp)
    finally:
        smtp.stop()
        asyncio.run_coroutine_threadsafe(webhook.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class Notified:
    """What the receivers got for one demo run."""

    webhook_alerts: list[dict[str, Any]]  # every alert of every webhook notification
    webhook_signed: int  # notifications whose signature verified
    webhook_notifications: int
    mails: list[Mail]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.webhook_alerts if a["kind"] == kind]


def _ours(alert: dict[str, Any], *, skus: set[str], equity: str) -> bool:
    return alert["details"].get("product_sku") in skus or alert["subject"] == equity


def for_run(
    received: Sequence[Received], mails: Sequence[Mail], *, skus: set[str], equity: str
) -> Notified:
    """Keep only what this run caused (its SKUs carry the run id, so does the equity)."""
    alerts: list[dict[str, Any]] = []
    signed = count = 0
    for item in received:
        mine = [a for a in item.json["data"]["alerts"] if _ours(a, skus=skus, equity=equity)]
        if not mine:
            continue
        count += 1
        signed += item.signature_ok is True
        alerts.extend(mine)
    ours = [m for m in mails if any(s in m.body for s in skus) or equity in m.body]
    return Notified(alerts, signed, count, ours)


def summary_lines(notified: Notified, *, limit: int = 12) -> list[str]:
    """What a person would have read: one line per notification title."""
    lines = [f"email: {m.subject}" for m in notified.mails[:limit]]
    seen: set[str] = set()
    for alert in notified.webhook_alerts:
        if alert["alert_id"] not in seen and len(seen) < limit:
            seen.add(alert["alert_id"])
            lines.append(f"webhook: {alert['summary']}")
    return lines
