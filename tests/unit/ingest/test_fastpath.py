"""The outermost review fast path does what the middleware it bypasses did: body limit,
X-Request-ID, error mapping, a JSON 500 without a trace; everything else passes through."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from ingest.auth import UnauthenticatedError
from ingest.fastpath import ReviewFastPath
from ingest.idempotency import StoredResponse
from ingest.middleware import request_id_var

Seen = list[tuple[str | None, str | None, str | None, bytes]]


async def _inner(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _app(seen: Seen, *, fail: Exception | None = None) -> ReviewFastPath:
    async def handler(
        api_key: str | None, idem: str | None, ctype: str | None, body: bytes
    ) -> StoredResponse:
        seen.append((api_key, idem, ctype, body))
        assert request_id_var.get() != "-"
        if fail is not None:
            raise fail
        return StoredResponse(201, b'{"id":"x"}')

    return ReviewFastPath(_inner, handler=handler, retry_after_s=1, max_body_bytes=10)


async def _call(
    app: ReviewFastPath,
    chunks: list[bytes],
    headers: list[tuple[bytes, bytes]],
    *,
    path: str = "/v1/reviews",
    method: str = "POST",
) -> tuple[int, dict[bytes, bytes], bytes]:
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


async def test_review_is_handled_with_headers_and_body() -> None:
    seen: Seen = []
    headers = [(b"x-api-key", b"k"), (b"idempotency-key", b"i"),
               (b"content-type", b"application/json"), (b"x-request-id", b"rid-1")]  # fmt: skip
    status, got, body = await _call(_app(seen), [b"{}", b"[]"], headers)
    assert (status, body) == (201, b'{"id":"x"}')
    assert got[b"x-request-id"] == b"rid-1" and got[b"content-type"] == b"application/json"
    assert seen == [("k", "i", "application/json", b"{}[]")]


async def test_request_id_is_minted_when_absent() -> None:
    _, got, _ = await _call(_app([]), [b"{}"], [])
    assert len(got[b"x-request-id"]) == 32


@pytest.mark.parametrize(
    ("chunks", "headers", "status"),
    [
        ([b"x" * 11], [(b"content-length", b"11")], 413),
        ([b"123456", b"789012"], [], 413),  # chunked: counted as it streams
        ([b""], [(b"content-length", b"nope")], 400),
    ],
)
async def test_body_limit(
    chunks: list[bytes], headers: list[tuple[bytes, bytes]], status: int
) -> None:
    seen: Seen = []
    got_status, _, body = await _call(_app(seen), chunks, headers)
    assert got_status == status and "detail" in orjson.loads(body)
    assert seen == []


async def test_our_errors_map_to_their_status() -> None:
    status, got, body = await _call(_app([], fail=UnauthenticatedError("no key")), [b"{}"], [])
    assert status == 401 and got[b"www-authenticate"] == b"ApiKey"
    assert orjson.loads(body) == {"detail": "no key"}


async def test_unexpected_error_is_a_json_500_without_trace() -> None:
    status, _, body = await _call(_app([], fail=RuntimeError("secret internals")), [b"{}"], [])
    assert status == 500 and orjson.loads(body) == {"detail": "internal server error"}


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/reviews"), ("POST", "/v1/products")])
async def test_other_requests_pass_through(method: str, path: str) -> None:
    seen: Seen = []
    status, _, _ = await _call(_app(seen), [b"{}"], [], method=method, path=path)
    assert status == 204 and seen == []
