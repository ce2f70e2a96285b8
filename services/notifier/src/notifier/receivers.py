"""Receiver adapters: the signed webhook (httpx) and Apprise (Slack, Teams, email, …).

`send` never raises for a delivery failure: it answers a `SendResult` saying whether to retry
and after how long the receiver asked to wait (Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from contracts.events import AlertRaised

from notifier import messages
from notifier.retry_policy import retry_after_s
from notifier.signing import signed_headers

log = logging.getLogger(__name__)

WEBHOOK_SCHEMES = ("webhook+http://", "webhook+https://")
# 4xx answers that may succeed later; any other 4xx is the request's fault: give up at once.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# A request signed ahead (`prepare`) is signed again at the send past this age: receivers
# reject webhook-timestamps too far from their clock (Standard Webhooks suggests 5 minutes).
RESIGN_AFTER_S = 60.0


@dataclass(slots=True)  # not frozen: one per send, and a frozen __init__ is ~3x slower
class SendResult:
    ok: bool
    retryable: bool = True
    retry_after_s: float | None = None
    error: str = ""


@dataclass(slots=True)  # not frozen: one per send
class Outgoing:
    """One notification as the adapters need it."""

    key: str  # idempotency key: webhook-id, and an Apprise message footer
    receiver: str
    group_labels: dict[str, str]
    alerts: Sequence[AlertRaised]
    published: Sequence[bytes] = ()  # each alert's record as published on alerts.v1, if known
    # What a receiver built ahead in `prepare` (the dispatcher's step), used by its `send`.
    prepared: Any = None


class Receiver(Protocol):
    name: str

    async def send(self, outgoing: Outgoing, *, now: datetime) -> SendResult: ...

    async def close(self) -> None: ...


def redact_url(url: str) -> str:
    """A URL safe for logs and the DLQ: scheme and host only (receiver URLs carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/…"


class WebhookReceiver:
    """POSTs the JSON payload signed as Standard Webhooks defines."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        key: bytes,
        timeout_s: float,
        dashboard_url: str | None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not url.startswith(WEBHOOK_SCHEMES):
            raise ValueError(f"a webhook URL starts with {' or '.join(WEBHOOK_SCHEMES)}")
        self.name = name
        self.url = url.removeprefix("webhook+")
        self._url = httpx.URL(self.url)  # parsed once, not on every post
        self._key = key
        self._dashboard_url = dashboard_url
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    def signed_request(self, outgoing: Outgoing, *, now: datetime) -> tuple[bytes, dict[str, str]]:
        """The JSON body and its headers: the Standard Webhooks signature and the idempotency
        key (the notification's key, the same on every attempt)."""
        body = messages.webhook_body(
            outgoing.alerts,
            published=outgoing.published,
            notification_id=outgoing.key,
            receiver=outgoing.receiver,
            group_labels=outgoing.group_labels,
            timestamp=now,
            dashboard_url=self._dashboard_url,
        )
        headers = signed_headers(
            self._key, msg_id=outgoing.key, timestamp_s=int(now.timestamp()), body=body
        )
        headers["idempotency-key"] = outgoing.key
        return body, headers

    def prepare(self, outgoing: Outgoing, *, now: datetime) -> None:
        """Sign ahead of the send (the dispatcher's step does this for a whole claim)."""
        outgoing.prepared = (*self.signed_request(outgoing, now=now), now.timestamp())

    async def send(self, outgoing: Outgoing, *, now: datetime) -> SendResult:
        prepared = outgoing.prepared
        if prepared is not None and now.timestamp() - prepared[2] <= RESIGN_AFTER_S:
            body, headers = prepared[0], prepared[1]
        else:  # not prepared, or signed too long ago for the receiver's timestamp tolerance
            body, headers = self.signed_request(outgoing, now=now)
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return SendResult(ok=True)
        status = response.status_code
        error = f"HTTP {status}: {response.text[:200]}"
        wait = retry_after_s(response.headers.get("retry-after"), now=now)
        retryable = status >= 500 or status in _RETRYABLE_4XX
        return SendResult(ok=False, retryable=retryable, retry_after_s=wait, error=error)

    async def close(self) -> None:
        await self._client.aclose()


class _CaptureErrors(logging.Handler):
    """Apprise reports why a send failed only in its log; keep the last message."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()[:300]


class AppriseReceiver:
    """Any Apprise URL. Apprise's `notify` blocks (SMTP, HTTP via requests), so it runs in a
    worker thread; the receiver's concurrency setting bounds how many."""

    def __init__(self, name: str, url: str, *, dashboard_url: str | None) -> None:
        import apprise  # ~0.1-0.5 s to import: only when a receiver needs it

        self.name = name
        self._apprise: Any = apprise.Apprise()
        if not self._apprise.add(url):
            raise ValueError(f"Apprise does not accept the URL {redact_url(url)}")
        self._dashboard_url = dashboard_url
        self._notify_type = apprise.NotifyType.FAILURE
        self._body_format = apprise.NotifyFormat.TEXT

    def _notify(self, title: str, body: str) -> SendResult:
        capture = _CaptureErrors()
        logger = logging.getLogger("apprise")
        logger.addHandler(capture)
        started = time.monotonic()
        try:
            ok = bool(
                self._apprise.notify(
                    title=title,
                    body=body,
                    notify_type=self._notify_type,
                    body_format=self._body_format,
                )
            )
        finally:
            logger.removeHandler(capture)
        if ok:
            return SendResult(ok=True)
        took = time.monotonic() - started
        return SendResult(ok=False, error=capture.last or f"apprise reported failure ({took:.1f}s)")

    async def send(self, outgoing: Outgoing, *, now: datetime) -> SendResult:
        title = messages.title(outgoing.alerts)
        body = messages.text_body(outgoing.alerts, dashboard_url=self._dashboard_url)
        body += f"\n\n(notification {outgoing.key})"
        return await asyncio.to_thread(self._notify, title, body)

    async def close(self) -> None:
        return None


def make_receiver(
    name: str, url: str, *, webhook_key: bytes | None, timeout_s: float, dashboard_url: str | None
) -> Receiver:
    """The adapter for a URL; ValueError names what is wrong (the URL itself is not echoed)."""
    if url.startswith(WEBHOOK_SCHEMES):
        if webhook_key is None:
            raise ValueError(f"receiver {name}: a signed webhook needs NOTIFIER_WEBHOOK_SECRET")
        return WebhookReceiver(
            name, url, key=webhook_key, timeout_s=timeout_s, dashboard_url=dashboard_url
        )
    return AppriseReceiver(name, url, dashboard_url=dashboard_url)
