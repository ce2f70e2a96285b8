"""Raw-ASGI fast path for the hottest operation, `POST /v1/reviews`, as the outermost app.

It runs the very same `create_review_core` as the FastAPI route (which still documents the
operation in OpenAPI and serves it when the fast path is off) but skips FastAPI/Starlette's
whole stack: routing, dependency solving, Request objects and the five middleware layers,
each wrapping `send`. Profiled in-process, that stack cost more than everything the request
itself does. What those layers provide is done here inline, with the same helpers and
answers: X-Request-ID (in the logs' context and echoed), the body limit (400 bad
Content-Length, 413 declared or streamed past the limit), HTTP metrics, the error log for a
5xx, and a JSON 500 instead of a trace. Every other request goes to the FastAPI app as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.idempotency import StoredResponse
from ingest.middleware import finish_request, request_id_of, request_id_var
from ingest.problems import problem

log = logging.getLogger(__name__)

Handler = Callable[[str | None, str | None, str | None, bytes], Awaitable[StoredResponse]]

PATH = "/v1/reviews"
_JSON = (b"content-type", b"application/json")


class ReviewFastPath:
    def __init__(
        self,
        app: ASGIApp,
        *,
        handler: Handler,
        retry_after_s: int,
        max_body_bytes: int,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.handler = handler
        self.retry_after_s = retry_after_s
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        api_key = idem = ctype = rid = length = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"idempotency-key":
                idem = value.decode("latin-1")
            elif name == b"content-type":
                ctype = value.decode("latin-1")
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                length = value
        request_id = request_id_of(rid)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            status, body, headers = await self._answer(api_key, idem, ctype, length, receive)
            if status == 0:  # the client went away mid-body: nobody to answer
                status = 499
                return
            raw = [
                _JSON,
                (b"content-length", b"%d" % len(body)),
                (b"x-request-id", request_id.encode("latin-1")),
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        finally:
            finish_request(scope, PATH, status, started, self.access_log)
            request_id_var.reset(token)

    async def _answer(
        self,
        api_key: str | None,
        idem: str | None,
        ctype: str | None,
        length: bytes | None,
        receive: Receive,
    ) -> tuple[int, bytes, dict[str, str]]:
        limit = self.max_body_bytes
        too_large: tuple[int, bytes, dict[str, str]] = (
            413,
            orjson.dumps({"detail": f"request body exceeds {limit} bytes"}),
            {},
        )
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return 400, b'{"detail":"invalid Content-Length"}', {}
            if declared > limit:
                return too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 0, b"", {}
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            result = await self.handler(api_key, idem, ctype, b"".join(chunks))
        except Exception as exc:
            answer = problem(exc, retry_after_s=self.retry_after_s)
            if answer is None:
                log.exception("unhandled error in POST %s", PATH)
                return 500, b'{"detail":"internal server error"}', {}
            return answer
        return result.status_code, result.body, {}
