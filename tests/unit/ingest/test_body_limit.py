"""BodyLimit counts streamed bytes: 413 with or without Content-Length, small bodies pass."""

from __future__ import annotations

from typing import Any

import pytest
from ingest.middleware import BodyLimit


async def _echo_length(scope: Any, receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def _call(chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    app = BodyLimit(_echo_length, max_body_bytes=10)
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "headers": headers}, receive, send)
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize(
    ("chunks", "headers", "status"),
    [
        ([b"12345"], [(b"content-length", b"5")], 200),
        ([b"x" * 11], [(b"content-length", b"11")], 413),
        ([b"123456", b"789012"], [], 413),  # chunked: no Content-Length, counted as it streams
        ([b"12345", b"12345"], [], 200),
        ([b""], [(b"content-length", b"nope")], 400),
    ],
)
async def test_body_limit(
    chunks: list[bytes], headers: list[tuple[bytes, bytes]], status: int
) -> None:
    assert (await _call(chunks, headers))[0] == status
