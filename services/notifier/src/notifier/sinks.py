"""Local receivers for tests, the benchmark and `make demo`: a webhook endpoint that can
answer 200, 500, 429 with Retry-After, hang or close the connection, and an SMTP server
(aiosmtpd). Both keep what they received. Not used by the service itself."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from notifier import signing


class Mode(StrEnum):
    OK = "ok"
    FAIL = "fail"  # 500
    THROTTLE = "throttle"  # 429 + Retry-After
    HANG = "hang"  # read the request, never answer
    CLOSE = "close"  # read the request, close the connection


@dataclass(frozen=True, slots=True)
class Received:
    at_s: float  # time.time() on arrival
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: no secret to check with

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(slots=True)
class WebhookSink:
    """A minimal HTTP/1.1 server (keep-alive, Content-Length bodies)."""

    host: str = "127.0.0.1"
    port: int = 0
    secret: str | None = None
    mode: Mode = Mode.OK
    retry_after_s: int = 1
    received: list[Received] = field(default_factory=list)  # answered 200 only
    attempts: int = 0
    attempt_ids: list[str] = field(default_factory=list)  # webhook-id of every request
    attempt_times: list[float] = field(default_factory=list)  # time.time() of every request
    _server: asyncio.Server | None = None
    # Open connections' handlers: stop() ends them, so none is left pending when the loop
    # that runs them closes (a keep-alive client would otherwise hold one open).
    _connections: set[asyncio.Task[None]] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            handlers = list(self._connections)
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def _verify(self, headers: dict[str, str], body: bytes) -> bool | None:
        if self.secret is None:
            return None
        key = signing.decode_secret(self.secret)
        try:
            expected = signing.signature(
                key,
                msg_id=headers["webhook-id"],
                timestamp_s=int(headers["webhook-timestamp"]),
                body=body,
            )
        except (KeyError, ValueError):
            return False
        return expected in headers.get("webhook-signature", "").split()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.attempts += 1
                self.attempt_ids.append(headers.get("webhook-id", ""))
                self.attempt_times.append(time.time())
                mode = self.mode
                if mode is Mode.CLOSE:
                    return
                if mode is Mode.HANG:
                    await asyncio.sleep(3600)
                    return
                status, extra = 200, ""
                if mode is Mode.FAIL:
                    status = 500
                elif mode is Mode.THROTTLE:
                    status, extra = 429, f"Retry-After: {self.retry_after_s}\r\n"
                else:
                    self.received.append(
                        Received(time.time(), headers, body, self._verify(headers, body))
                    )
                    self.arrived.set()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}\r\n".encode("latin-1")
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # stop() ends open connections this way. Returning (rather than re-raising) ends
            # the task normally: asyncio's stream callback logs a cancelled handler as an error.
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()


@dataclass(frozen=True, slots=True)
class Mail:
    at_s: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body: str


class SmtpSink:
    """aiosmtpd on a local port; `mails` holds every message accepted."""

    def __init__(self, *, host: str = "127.0.0.1", port: int) -> None:
        from aiosmtpd.controller import Controller  # tests and demo only: imported on use

        self.host, self.port = host, port
        self.mails: list[Mail] = []
        self._controller = Controller(self, hostname=host, port=port)

    def url(self, *, to: str = "team@example.com", sender: str = "pulse@example.com") -> str:
        """The Apprise URL that sends here (plain SMTP, no login)."""
        return f"mailto://example.com:{self.port}?smtp={self.host}&from={sender}&to={to}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802  # aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        self.mails.append(
            Mail(
                at_s=time.time(),
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                subject=str(message.get("subject", "")),
                body=str(body),
            )
        )
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
