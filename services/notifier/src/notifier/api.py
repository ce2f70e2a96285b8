"""The notifier's HTTP side: silences (`/v1/silences`, behind nginx, X-API-Key), `/healthz`,
`/readyz` and `/metrics` (unauthenticated, for probes and Prometheus)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from servicekit import metrics
from servicekit.auth import ApiKeyVerifier

from notifier.notifier import SilenceBook
from notifier.silences import SilenceRequest, SilenceState, new_silence

Check = Callable[[], Awaitable[tuple[bool, str]]]


def create_app(
    *,
    silences: SilenceBook,
    verifier: ApiKeyVerifier,
    now: Callable[[], datetime],
    liveness: dict[str, Check],
    readiness: dict[str, Check],
) -> FastAPI:
    app = FastAPI(title="Pulse notifier", version="0.1.0", docs_url=None, redoc_url=None)

    def unauthorized() -> JSONResponse:
        return JSONResponse({"detail": "missing or invalid X-API-Key"}, status_code=401)

    def document(silence: Any) -> dict[str, Any]:
        return {**silence.model_dump(mode="json"), "state": silence.state(now()).value}

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(reasons)}, status_code=422)

    @app.post("/v1/silences", status_code=201, response_model=None)
    async def add_silence(
        request: SilenceRequest, x_api_key: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        if not verifier.verify(x_api_key):
            return unauthorized()
        try:
            silence = new_silence(request, now=now())
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        await silences.save(silence)
        return JSONResponse(document(silence), status_code=201)

    @app.get("/v1/silences", response_model=None)
    async def list_silences(
        x_api_key: Annotated[str | None, Header()] = None, state: SilenceState | None = None
    ) -> JSONResponse:
        if not verifier.verify(x_api_key):
            return unauthorized()
        at = now()
        found = [s for s in silences.current if state is None or s.state(at) is state]
        return JSONResponse({"silences": [document(s) for s in found]})

    @app.delete("/v1/silences/{silence_id}", response_model=None)
    async def expire_silence(
        silence_id: str, x_api_key: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        if not verifier.verify(x_api_key):
            return unauthorized()
        at = now()
        match = next((s for s in silences.current if s.id == silence_id), None)
        if match is None:
            return JSONResponse({"detail": f"no silence {silence_id}"}, status_code=404)
        if match.state(at) is not SilenceState.EXPIRED:
            match = match.model_copy(update={"ends_at": at, "starts_at": min(match.starts_at, at)})
            await silences.save(match)
        return JSONResponse(document(match))

    async def run_checks(checks: dict[str, Check]) -> JSONResponse:
        results: dict[str, Any] = {}
        healthy = True
        for name, check in checks.items():
            ok, detail = await check()
            results[name] = {"ok": ok, "detail": detail}
            healthy = healthy and ok
        return JSONResponse(
            {"status": "ok" if healthy else "fail", "checks": results},
            status_code=200 if healthy else 503,
        )

    @app.get("/healthz", response_model=None)
    async def healthz() -> JSONResponse:
        return await run_checks(liveness)

    @app.get("/readyz", response_model=None)
    async def readyz() -> JSONResponse:
        return await run_checks(readiness)

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
