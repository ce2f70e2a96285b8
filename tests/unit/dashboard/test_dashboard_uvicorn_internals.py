"""stream.DirectWriter reads uvicorn's internals: this fails loudly when an upgrade moves them
(uvicorn is pinned below 0.55 in services/dashboard/pyproject.toml)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import uvicorn
from dashboard.stream import DirectWriter
from pulse_cli.processes import free_port


async def test_uvicorn_httptools_cycle_still_has_what_direct_writes_use() -> None:
    found: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        writer = DirectWriter.of(send)
        found["writer"] = writer
        if writer is not None:
            writer.limit_send_buffer(65_536)
            sock = writer.transport.get_extra_info("socket")
            found["sndbuf"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            found["wrote"] = writer.write(b"bc")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    port = free_port(range(61540, 61550))  # the dashboard's range
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110  # uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
    finally:
        server.should_exit = True
        await task
    version = tuple(int(part) for part in uvicorn.__version__.split(".")[:2])
    assert version < (0, 55), "re-check stream.DirectWriter against this uvicorn"
    assert found["writer"] is not None, "uvicorn's cycle lost transport/flow/chunked_encoding"
    assert found["wrote"] is True
    assert found["sndbuf"] == 2 * 65_536  # Linux doubles SO_SNDBUF for its bookkeeping
    assert response.text == "abc"  # the direct chunk sits between the ASGI ones, well framed
