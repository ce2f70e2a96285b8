"""The local webhook receiver (tests and `make demo`) stops cleanly with clients still connected."""

from __future__ import annotations

import asyncio

import pytest
from notifier.sinks import WebhookSink


async def test_stop_ends_the_handlers_of_keep_alive_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = WebhookSink(port=0)
    await sink.start()
    reader, writer = await asyncio.open_connection(sink.host, sink.port)
    writer.write(b"POST /hook HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.startswith(b"HTTP/1.1 200")
    assert len(sink.received) == 1
    # The client keeps its connection open, as the notifier's pooled HTTP client does.
    await sink.stop()
    handlers = [
        t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "WebhookSink._handle"
    ]
    assert handlers == []
    # The server side closed the connection: the client reads end-of-stream.
    await asyncio.wait_for(reader.read(), 5)
    assert reader.at_eof()
    writer.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
