"""The ingest bench's open-loop generator (bench/ingest/constant_rate.py).

Against an in-process HTTP server: latency counts from each request's due time (a stalled
answer shows in the requests queued behind it), every request carries its own
Idempotency-Key, and a dropped connection is one error, not a hang or a lost count.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pulse_cli.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "ingest" / "constant_rate.py"


cr = load_script(SCRIPT, "ingest_constant_rate")


def response(status: int, body: bytes = b'{"ok":true}', *, name: str = "content-length") -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{name}: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_parser_splits_pipelined_responses_fed_in_pieces() -> None:
    stream = response(201) + response(422, b'{"detail":"bad"}', name="Content-Length")
    stream += b"HTTP/1.1 204 No Content\r\nserver: x\r\n\r\n"  # no body, no length
    parser = cr.ResponseParser()
    statuses = []
    for i in range(0, len(stream), 7):
        statuses += parser.feed(stream[i : i + 7])
    assert statuses == [201, 422, 204]
    assert parser.feed(b"") == []


def test_parser_waits_for_the_whole_body() -> None:
    parser = cr.ResponseParser()
    whole = response(201, b"x" * 100)
    assert parser.feed(whole[:-1]) == []
    assert parser.feed(whole[-1:]) == [201]


def test_parser_refuses_chunked_bodies() -> None:
    parser = cr.ResponseParser()
    with pytest.raises(ValueError, match="chunked"):
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


class Server:
    """Minimal keep-alive HTTP/1.1 server: holds the n-th request `delay_s(n)`, then answers
    201, or drops the connection if n is in `drop`."""

    def __init__(self, *, delay_s: Callable[[int], float], drop: set[int]) -> None:
        self.delay_s, self.drop = delay_s, drop
        self.keys: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                n = len(self.keys)
                self.keys.append(re.search(rb"Idempotency-Key: (\S+)", head).group(1).decode())  # type: ignore[union-attr]
                await asyncio.sleep(self.delay_s(n))
                if n in self.drop:
                    writer.transport.abort()
                    return
                writer.write(response(201))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def server_factory() -> AsyncIterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(
        *, delay_s: Callable[[int], float] = lambda n: 0.0, drop: set[int] | None = None
    ) -> Server:
        server = Server(delay_s=delay_s, drop=drop or set())
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


async def test_latency_counts_from_the_due_time_not_the_send(
    server_factory: Callable[..., Server],
) -> None:
    # One connection, 200/s: the server holds the first answer 150 ms. A closed-loop client
    # would send the next requests late and report them fast; here they were due at 5, 10,
    # ... ms, so they report the ~140 ms they spent waiting for the connection.
    server = server_factory(delay_s=lambda n: 0.15 if n == 0 else 0.0)
    port = await server.start()
    result = await asyncio.wait_for(
        cr.run(f"http://127.0.0.1:{port}", "/v1/reviews", b'{"a":1}', "k", 200.0, 0.2, 1), 10
    )
    latencies = result["latencies_ms"]
    assert result["errors"] == 0 and result["sent"] == 40 and len(latencies) == 40
    assert latencies[0] >= 145
    assert latencies[1] >= 130  # due at +5 ms, sent once the first answer came back
    assert min(latencies[-5:]) < 50  # the queue drained: later requests are fast again
    assert len(set(server.keys)) == 40


async def test_a_dropped_connection_is_one_error_and_the_run_finishes(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(drop={3})
    port = await server.start()
    result = await asyncio.wait_for(
        cr.run(f"http://127.0.0.1:{port}", "/v1/reviews", b"{}", "k", 500.0, 0.04, 2), 10
    )
    assert result["sent"] == 20
    assert result["errors"] == 1
    assert len(result["latencies_ms"]) == 19
    assert server.connections == 3  # the dropped one was replaced
    assert len(server.keys) == 20
