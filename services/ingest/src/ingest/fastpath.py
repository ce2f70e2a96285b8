"""Raw-ASGI fast path for the hottest operation, `POST /v1/reviews`.

It runs the very same `create_review_core` as the FastAPI route (which still documents the
operation in OpenAPI) but skips FastAPI's routing, dependency solving and Request objects,
which cost more than the validation itself. Errors map through the same `problem` table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.idempotency import StoredResponse
from ingest.problems import problem

Handler = Callable[[str | None, str | None, str | None, bytes], Awaitable[StoredResponse]]

PATH = "/v1/reviews"
_ROUTE = SimpleNamespace(path=PATH)  # what RequestContext reads for the metrics label


class ReviewFastPath:
    def __init__(self, app: ASGIApp, *, handler: Handler, retry_after_s: int) -> None:
        self.app = app
        self.handler = handler
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        api_key = idem = ctype = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"idempotency-key":
                idem = value.decode("latin-1")
            elif name == b"content-type":
                ctype = value.decode("latin-1")
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            result = await self.handler(api_key, idem, ctype, b"".join(chunks))
            status, body = result.status_code, result.body
            headers: dict[str, str] = {}
        except Exception as exc:
            answer = problem(exc, retry_after_s=self.retry_after_s)
            if answer is None:
                raise
            status, body, headers = answer
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
