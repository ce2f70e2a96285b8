"""Open-loop constant-rate load generator (one process of several): request i is due at
start + i/rate whether or not earlier ones have answered, and its latency is measured from
that due time, so a stall shows up in the percentiles (no coordinated omission).

Raw HTTP/1.1 over a pool of keep-alive connections; prints one JSON line with latencies.

Lean on purpose: it shares the 2-core machine with what it measures, so every request costs
one timer callback, one write and one read callback (asyncio protocols, no task or stream
reader per request). A request due while every connection is busy waits for the next free
one, and that wait counts in its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import time
from collections import deque
from typing import cast
from urllib.parse import urlsplit

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_TIMER_GRANULARITY_S = 0.001
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)


class ResponseParser:
    """Splits a keep-alive HTTP/1.1 byte stream into responses; returns their status codes.
    Bodies are framed by Content-Length (what the ingest API and nginx send for JSON);
    a chunked response is refused rather than misread."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[int]:
        self._buffer += data
        statuses = []
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self._buffer[:end])
            if _CHUNKED.search(head):
                raise ValueError("chunked response: not supported by this generator")
            match = _CONTENT_LENGTH.search(head)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self._buffer) < total:
                break
            statuses.append(int(head[9:12]))
            del self._buffer[:total]
        return statuses


class _Connection(asyncio.Protocol):
    def __init__(self, load: ConstantLoad) -> None:
        self._load = load
        self._parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.due = 0.0  # the due time of the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            statuses = self._parser.feed(data)
        except ValueError:
            self._load.failed(self)
            return
        for status in statuses:
            self._load.answered(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._load.failed(self)


class ConstantLoad:
    def __init__(self, host: str, port: int, head: bytes, body: bytes, *, rate: float,
                 total: int) -> None:  # fmt: skip
        self._loop = asyncio.get_running_loop()
        self._host, self._port = host, port
        self._head, self._body = head, body
        self._prefix = f"cr-{os.getpid()}-{time.time_ns()}-".encode()
        self._rate, self.total = rate, total
        self._idle: list[_Connection] = []
        self._waiting: deque[tuple[int, float]] = deque()  # due, no connection free yet
        self._busy: set[_Connection] = set()
        self._next = 0
        self._ended = 0  # answered or failed
        self._start = 0.0
        self.latencies_ms: list[float] = []
        self.errors = 0
        self._finished = self._loop.create_future()
        self._replacing: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs

    async def connect(self, count: int) -> None:
        for _ in range(count):
            _, conn = await self._loop.create_connection(
                lambda: _Connection(self), self._host, self._port
            )
            self._idle.append(conn)

    async def run(self) -> float:
        self._start = time.monotonic() + 0.1
        self._loop.call_later(0.1, self._tick)
        await self._finished
        return time.monotonic() - self._start

    def _tick(self) -> None:
        # The loop's timers fire with millisecond granularity: requests due within the
        # next millisecond go now (their latency then counts from the send, not from the
        # earlier due time), or the timer would spin on a sub-millisecond delay. Times are
        # time.monotonic(): uvloop's loop.time() is in whole milliseconds.
        now = time.monotonic()
        while self._next < self.total:
            due = self._start + self._next / self._rate
            if due > now + _TIMER_GRANULARITY_S:
                self._loop.call_later(due - now, self._tick)
                return
            self._send(self._next, max(due, now))
            self._next += 1

    def _send(self, i: int, due: float) -> None:
        if not self._idle:
            self._waiting.append((i, due))
            return
        conn = self._idle.pop()
        conn.due = due
        self._busy.add(conn)
        assert conn.transport is not None
        conn.transport.write(self._head + self._prefix + b"%d\r\n\r\n" % i + self._body)

    def answered(self, conn: _Connection, status: int) -> None:
        self.latencies_ms.append((time.monotonic() - conn.due) * 1000)
        if not 200 <= status < 300:
            self.errors += 1
        self._ended += 1
        self._release(conn)

    def failed(self, conn: _Connection) -> None:
        """A broken connection: the request it carried (if any) is an error; a new connection
        replaces it. Called again by connection_lost after the abort: then a no-op."""
        if conn in self._busy:
            self._busy.discard(conn)
            self.errors += 1
            self._ended += 1
        elif conn in self._idle:
            self._idle.remove(conn)
        else:
            return
        if conn.transport is not None:
            conn.transport.abort()
        task = self._loop.create_task(self._replace())
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)
        self._check_finished()

    async def _replace(self) -> None:
        give_up = self._loop.time() + 10
        while True:
            try:
                await self.connect(1)
                break
            except OSError:
                if self._loop.time() > give_up:
                    while self._waiting:  # nothing will carry them
                        self._waiting.popleft()
                        self.errors += 1
                        self._ended += 1
                    self._check_finished()
                    return
                await asyncio.sleep(0.2)
        self._release(self._idle.pop())

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        self._idle.append(conn)
        if self._waiting:
            self._send(*self._waiting.popleft())
        self._check_finished()

    def _check_finished(self) -> None:
        if self._ended >= self.total and not self._finished.done():
            self._finished.set_result(None)


async def run(url: str, path: str, body: bytes, key: str, rate: float, duration_s: float,
              connections: int) -> dict[str, object]:  # fmt: skip
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\nIdempotency-Key: "
    ).encode()
    load = ConstantLoad(host, port, head, body, rate=rate, total=int(rate * duration_s))
    await load.connect(connections)
    elapsed = await load.run()
    return {
        "latencies_ms": load.latencies_ms,
        "errors": load.errors,
        "sent": load.total,
        "elapsed_s": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", default="/v1/reviews")
    parser.add_argument("--body", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests/s of this process")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", required=True, help="file to write the JSON result to")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(args.url, args.path, args.body.encode(), args.key, args.rate, args.duration,
            args.connections)
    )  # fmt: skip
    # A file, not stdout: anything else writing to stdout would corrupt the long JSON line.
    pathlib.Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
