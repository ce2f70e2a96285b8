"""One write per response: CoalescingTransport's contract, and uvicorn serving real HTTP/1.1
through CoalescingHttpToolsProtocol (keep-alive, pipelining, Connection: close, big bodies)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from ingest.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport:
    """Stands in for the socket transport: records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_writes_in_one_loop_turn_leave_as_one_in_order() -> None:
    raw = RecordingTransport()
    t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    t.write(bytearray(b"{}"))
    t.write(b"")
    assert raw.writes == []  # nothing before the turn ends
    assert t.get_write_buffer_size() == 45
    await _turn()
    assert raw.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"next")
    await _turn()
    assert raw.writes[1:] == [b"next"]


async def test_past_64_kib_pending_it_writes_at_once() -> None:
    raw = RecordingTransport()
    t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"h" * 100)
    t.write(b"b" * 70_000)  # the real transport's flow control must see a big body now
    assert raw.writes == [b"h" * 100 + b"b" * 70_000]
    assert t.get_write_buffer_size() == 0
    t.write(b"tail")
    await _turn()
    assert raw.writes[1:] == [b"tail"]


async def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    raw = RecordingTransport()
    t = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
    t.write(b"a")
    t.write(b"b")
    t.close()
    assert raw.writes == [b"ab"] and raw.closed
    await _turn()  # the scheduled flush finds nothing left
    assert raw.writes == [b"ab"]

    raw2 = RecordingTransport()
    t2 = CoalescingTransport(raw2, loop)  # type: ignore[arg-type]
    t2.write(b"lost")
    t2.abort()
    await _turn()
    assert raw2.writes == [] and raw2.aborted


async def test_nothing_is_written_once_the_peer_is_gone() -> None:
    raw = RecordingTransport()
    t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"late")
    raw.closed = True  # connection lost before the turn ended
    await _turn()
    assert raw.writes == []
    assert t.get_extra_info("peername") == ("127.0.0.1", 1234)  # the rest is delegated
    assert t.is_closing()


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"x" * 300_000 if scope["path"] == "/big" else scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> Any:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _app, http=CoalescingHttpToolsProtocol, log_config=None, access_log=False, lifespan="off"
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(1000):  # uvicorn exposes a flag, not an event
        if srv.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert srv.started
    yield sock.getsockname()[1]
    srv.should_exit = True
    await asyncio.wait_for(task, 10)


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    status = await reader.readline()
    headers = {}
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.rstrip(b"\r\n").partition(b": ")
        headers[name.lower()] = value
    body = await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, body


@pytest.mark.timeout(60)
async def test_uvicorn_serves_keep_alive_pipelined_and_closing_requests(
    server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces: list[int] = []  # how many writes each flush carried
    flush = CoalescingTransport.flush

    def counting_flush(self: CoalescingTransport) -> None:
        pieces.append(len(self._pending))
        flush(self)

    monkeypatch.setattr(CoalescingTransport, "flush", counting_flush)
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n")
    for expected in (b"/one", b"/two"):
        status, _, body = await asyncio.wait_for(_read_response(reader), 5)
        assert status.startswith(b"HTTP/1.1 200") and body == expected
    writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    _, _, body = await asyncio.wait_for(_read_response(reader), 5)
    assert body == b"x" * 300_000
    writer.write(b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    status, headers, body = await asyncio.wait_for(_read_response(reader), 5)
    assert body == b"/last" and headers[b"connection"] == b"close"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the response
    writer.close()
    # uvicorn wrote status+headers and body separately; each response left in one write.
    assert pieces.count(2) >= 4 and max(pieces) <= 2
