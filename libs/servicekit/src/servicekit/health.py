"""A small HTTP server for workers: `/healthz`, `/readyz` and `/metrics`.

Checks are async callables returning (ok, detail). `/healthz` (liveness) runs the liveness
checks; `/readyz` runs the readiness checks. Failures answer 503 with the details as JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson

from servicekit import metrics

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]

_MAX_REQUEST_LINE = 8192


class HealthServer:
    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.liveness: dict[str, Check] = {}
        self.readiness: dict[str, Check] = {}
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("health server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("health server listening on %s:%d", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _run(self, checks: dict[str, Check]) -> tuple[int, bytes, str]:
        results: dict[str, dict[str, object]] = {}
        healthy = True
        for name, check in checks.items():
            try:
                ok, detail = await asyncio.wait_for(check(), timeout=2.0)
            except Exception as exc:  # a failing check is an answer, not a crash
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": ok, "detail": detail}
            healthy = healthy and ok
        body = orjson.dumps({"status": "ok" if healthy else "fail", "checks": results})
        return (200 if healthy else 503), body, "application/json"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            if len(request_line) > _MAX_REQUEST_LINE:
                return
            # Drain headers; workers take no request bodies.
            while True:
                line = await asyncio.wait_for(reader.readline(), timeout=5.0)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/healthz":
                status, body, ctype = await self._run(self.liveness)
            elif path == "/readyz":
                status, body, ctype = await self._run(self.readiness)
            elif path == "/metrics":
                body, ctype = metrics.render()
                status = 200
            else:
                status, body, ctype = 404, b'{"detail":"not found"}', "application/json"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
