"""A cheap HTTP/1.1 client for open-loop load: raw asyncio streams over keep-alive connections.

httpx spends ~10× more CPU per request than this (see `_client_cost.py`); on a 2-core machine
that also runs the whole pipeline, the generator must not be what limits the rate. The pool
opens connections on demand, at most `connections` in use at once, and reuses them (LIFO). A
connection the server closes is replaced; a request that failed before any answer arrived is
retried once on a fresh connection with the same Idempotency-Key, which the API makes safe.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class HttpPool:
    def __init__(self, url: str, headers: dict[str, str], *, connections: int = 128) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.slots = asyncio.Semaphore(connections)  # requests in flight = connections in use
        self.idle: list[_Conn] = []  # LIFO: the most recently used connection goes first
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.common = f"Host: {self.host}\r\nContent-Type: application/json\r\n{extra}".encode()

    async def start(self) -> None:
        self.idle.append(await asyncio.open_connection(self.host, self.port))

    async def _get(self) -> _Conn:
        """A connection for the caller, who holds a slot."""
        if self.idle:
            return self.idle.pop()
        return await self._open()

    async def _open(self) -> _Conn:
        return await asyncio.open_connection(self.host, self.port)

    def _drop(self, conn: _Conn) -> None:
        conn[1].close()

    async def post(self, path: str, body: bytes, idempotency_key: str) -> tuple[int, bytes]:
        request = b"POST %s HTTP/1.1\r\n%sIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            path.encode(),
            self.common,
            idempotency_key.encode(),
            len(body),
            body,
        )
        async with self.slots:
            return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            # A retry never takes another idle connection: the server may have closed those
            # too (keepalive timeout); the Idempotency-Key makes the resend safe.
            conn = await self._get() if attempt == 0 else await self._open()
            reader, writer = conn
            try:
                writer.write(request)
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed before answering")
            except OSError:
                self._drop(conn)
                if attempt:
                    raise
                continue
            try:
                status = int(status_line.split()[1])
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                payload = await reader.readexactly(length)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                self._drop(conn)
                raise
            if close:
                self._drop(conn)
            else:
                self.idle.append(conn)
            return status, payload
        raise AssertionError("unreachable")

    async def close(self) -> None:
        while self.idle:
            self._drop(self.idle.pop())
