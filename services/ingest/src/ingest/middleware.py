"""Pure-ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

`BodyLimit` counts the bytes actually streamed, so a chunked body without Content-Length is
cut off at the limit too. `RequestContext` carries X-Request-ID into logs and the response
and records the HTTP metrics.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from typing import Any

import orjson
from servicekit import metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

SERVICE = "ingest"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record emitted while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class _BodyTooLargeError(Exception):
    pass


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        detail = f"request body exceeds {limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, "invalid Content-Length")
                    return
                if declared > limit:
                    await _send_json(send, 413, detail)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await _send_json(send, 413, detail)


class RequestContext:
    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                header = value
                break
        request_id = request_id_of(header)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route: Any = scope.get("route")
            finish_request(
                scope, getattr(route, "path", "unmatched"), status, started, self.access_log
            )
            request_id_var.reset(token)


def request_id_of(value: bytes | None) -> str:
    """The caller's X-Request-ID (nginx always sends one), else a new one."""
    return value.decode("latin-1")[:128] if value else uuid.uuid4().hex


_Series = tuple[Any, Any]
_series: dict[tuple[str, str, int], _Series] = {}


def finish_request(scope: Scope, route: str, status: int, started: float, access_log: bool) -> None:
    """HTTP metrics (label children cached: `labels()` costs more than the increment) and
    the access/error log line."""
    elapsed = time.perf_counter() - started
    method = scope["method"]
    series = _series.get((method, route, status))
    if series is None:
        series = (
            metrics.HTTP_REQUESTS.labels(SERVICE, method, route, str(status)),
            metrics.HTTP_LATENCY.labels(SERVICE, method, route),
        )
        if len(_series) < 1000:  # routes are templates, statuses few: bounded anyway
            _series[(method, route, status)] = series
    series[0].inc()
    series[1].observe(elapsed)
    if access_log or status >= 500:
        log.info(
            "%s %s -> %d in %.1f ms",
            method,
            scope["path"],
            status,
            elapsed * 1000,
            extra={"status": status, "route": route},
        )
