"""Composition root: settings → archive catalog → engine → FastAPI app.

`GET /v1/query?sql=…` and `POST /v1/query {"sql": …}` answer 200 with columns and rows,
400 with the reason for anything the guard or DuckDB refuses, 401 without a valid key,
408 past the time limit. `/healthz`, `/readyz` (the archive can be listed), `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from servicekit import metrics
from servicekit.auth import ApiKeySettings, ApiKeyVerifier
from starlette.concurrency import run_in_threadpool

from query.archive import ArchiveCatalog, local_location, s3_location
from query.engine import (
    ArchiveUnavailableError,
    QueryEngine,
    QueryFailedError,
    QueryResult,
    QueryTimeoutError,
)
from query.guard import QueryRejectedError
from query.settings import ArchiveSettings, QuerySettings

log = logging.getLogger(__name__)


class QueryBody(BaseModel):
    sql: str = Field(min_length=1)
    max_rows: int | None = Field(default=None, gt=0)


def result_document(result: QueryResult) -> dict[str, Any]:
    return {
        "columns": result.columns,
        "types": result.types,
        "rows": [[jsonable(v) for v in row] for row in result.rows],
        "row_count": len(result.rows),
        "truncated": result.truncated,
        "elapsed_ms": result.elapsed_ms,
        "tables": result.tables,
    }


def jsonable(value: Any) -> Any:
    """A DuckDB value as JSON: decimals as strings (exact), times as ISO-8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | bytes):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _json(status: int, document: dict[str, Any]) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


def create_app(engine: QueryEngine, verifier: ApiKeyVerifier) -> FastAPI:
    app = FastAPI(title="Pulse query", version="0.1.0", docs_url=None, redoc_url=None)
    metrics.SERVICE_INFO.labels(service="query").set(1)

    async def answer(sql: str, key: str | None, max_rows: int | None) -> Response:
        if not verifier.verify(key):
            metrics.QUERIES.labels(outcome="unauthorized").inc()
            return _json(401, {"detail": "missing or invalid X-API-Key"})
        try:
            result = await run_in_threadpool(engine.run, sql, max_rows=max_rows)
        except QueryRejectedError as exc:
            metrics.QUERIES.labels(outcome="rejected").inc()
            return _json(400, {"detail": f"query rejected: {exc.reason}"})
        except QueryFailedError as exc:
            metrics.QUERIES.labels(outcome="failed").inc()
            return _json(400, {"detail": f"query failed: {exc}"})
        except ArchiveUnavailableError as exc:
            metrics.QUERIES.labels(outcome="unavailable").inc()
            return _json(503, {"detail": str(exc)})
        except QueryTimeoutError as exc:
            metrics.QUERIES.labels(outcome="timeout").inc()
            return _json(408, {"detail": str(exc)})
        metrics.QUERIES.labels(outcome="ok").inc()
        return _json(200, result_document(result))

    @app.get("/v1/query")
    async def query_get(
        sql: Annotated[str, Query(min_length=1)],
        max_rows: Annotated[int | None, Query(gt=0)] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        return await answer(sql, x_api_key, max_rows)

    @app.post("/v1/query")
    async def query_post(
        body: QueryBody, x_api_key: Annotated[str | None, Header()] = None
    ) -> Response:
        return await answer(body.sql, x_api_key, body.max_rows)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await asyncio.wait_for(run_in_threadpool(engine.catalog.files, "alerts"), 5.0)
        except Exception as exc:  # not ready is an answer, not a crash
            return _json(503, {"status": "fail", "detail": f"{type(exc).__name__}: {exc}"})
        return _json(200, {"status": "ok", "archive": engine.catalog.location.display})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.exception_handler(QueryRejectedError)
    async def rejected(_: Request, exc: QueryRejectedError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=400)

    return app


def build_engine(settings: QuerySettings, archive: ArchiveSettings) -> QueryEngine:
    location = (
        local_location(settings.local_archive_dir)
        if settings.local_archive_dir
        else s3_location(archive, prefix=settings.archive_prefix)
    )
    return QueryEngine(
        ArchiveCatalog(location, ttl_s=settings.catalog_ttl_s),
        max_rows=settings.max_rows,
        timeout_s=settings.timeout_s,
        max_sql_chars=settings.max_sql_chars,
    )


def build_app() -> tuple[FastAPI, QuerySettings]:
    from servicekit.settings import load_settings

    settings = load_settings(QuerySettings)
    engine = build_engine(settings, load_settings(ArchiveSettings))
    verifier = ApiKeyVerifier(load_settings(ApiKeySettings).pulse_api_key.get_secret_value())
    return create_app(engine, verifier), settings
