"""Composition root: builds the FastAPI app from settings, a Database and a clock.

Routes stay thin (authorize → decode → call the repository → answer). Bodies are decoded by
pydantic straight from bytes (`model_validate_json`), not by FastAPI's body machinery: it is
faster, keeps the models strict (ISO strings for datetimes), and lets us answer 415 and 422
exactly. The request schemas are still published in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
from fastapi import FastAPI, Header, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from servicekit import metrics, tracing
from servicekit.clock import Clock, SystemClock
from starlette.types import ASGIApp

from ingest import schemas
from ingest.auth import ApiKey, Scope
from ingest.fastpath import ReviewFastPath
from ingest.idempotency import (
    StoredResponse,
    check_key,
    fingerprint,
    fingerprint_document,
)
from ingest.keystore import KeyStore
from ingest.middleware import BodyLimit, RequestContext
from ingest.problems import (
    ERROR_STATUS,
    InvalidBodyError,
    NotFoundError,
    UnsupportedMediaTypeError,
    problem,
)
from ingest.repository import (
    Database,
    DatabaseConfig,
    DatabaseUnavailableError,
    PendingReview,
)
from ingest.review_writer import ReviewWriter
from ingest.settings import IngestSettings
from ingest.tick_batch import COPY_COLUMNS, TRACED_COPY_COLUMNS, copy_text, parse_tick_batch

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_JSON = "application/json"
_BODY_MODELS: tuple[type[BaseModel], ...] = (
    schemas.ProductIn,
    schemas.ReviewIn,
    schemas.ReviewPatch,
    schemas.ReviewBatchIn,
    schemas.TickBatchIn,
)


# Module level: with postponed annotations FastAPI resolves these names in module globals.
IdemKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="required on every POST")
]
ApiKeyHeader = Annotated[str | None, Header(alias="X-API-Key", description="your API key")]


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=_JSON, headers=headers)


def _stored(result: StoredResponse) -> Response:
    return Response(result.body, status_code=result.status_code, media_type=_JSON)


def _problem(status: int, detail: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": schemas.Problem, "description": detail}}


_COMMON = {
    **_problem(401, "missing or unknown X-API-Key"),
    **_problem(403, "the key lacks the operation's scope"),
    **_problem(413, "body too large"),
    **_problem(415, "Content-Type is not application/json"),
    **_problem(422, "invalid body"),
    **_problem(503, "database unavailable; see Retry-After"),
}
_POST = {**_COMMON, **_problem(400, "missing or invalid Idempotency-Key")}


async def decode(request: Request, model: type[M]) -> M:
    return decode_body(request.headers.get("content-type"), await request.body(), model)


def check_content_type(content_type: str | None) -> None:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in (_JSON, "application/merge-patch+json"):
        raise UnsupportedMediaTypeError(f"Content-Type must be {_JSON}")


def decode_body(content_type: str | None, body: bytes, model: type[M]) -> M:
    """415 unless JSON; 422 (with pydantic's error list) for anything the model refuses."""
    check_content_type(content_type)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidBodyError([dict(e) for e in errors]) from exc


def review_payload(review_id: uuid.UUID, review: schemas.ReviewIn, now: Any) -> dict[str, Any]:
    return {"id": review_id, **review.model_dump(), "created_at": now, "updated_at": now}


def _review_record(row: asyncpg.Record) -> dict[str, Any]:
    record = {k: row[k] for k in schemas.ReviewOut.model_fields}
    record["id"] = str(record["id"])  # asyncpg's UUID type is not orjson's uuid.UUID
    return record


def create_app(
    settings: IngestSettings, *, database: Database | None = None, clock: Clock | None = None
) -> FastAPI:
    clock = clock or SystemClock()
    # Read once: with tracing off (the default) no request looks further than this local.
    traced = tracing.ENABLED
    db = database or Database(_db_config(settings))
    keys = KeyStore(db.load_api_keys, clock=clock, refresh_s=settings.api_key_refresh_s)
    writer = ReviewWriter(
        db,
        deadline_s=settings.db_acquire_timeout_s + settings.db_statement_timeout_s + 0.1,
        flushers=settings.review_flushers,
        linger_s=settings.review_linger_ms / 1000,
        traced=traced,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.start()
        writer.start()
        purge = asyncio.create_task(purge_idempotency_keys())
        metrics.SERVICE_INFO.labels("ingest").set(1)
        # Everything built so far (FastAPI, pydantic schemas, ~60k objects) lives as long as
        # the process: take it out of the cyclic GC's sight. A full collection over it took
        # ~19 ms, a stall for every request in flight on this worker, often enough to set p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            purge.cancel()
            await writer.stop()
            await db.close()

    async def purge_idempotency_keys() -> None:
        """Forget idempotency keys older than the TTL, hourly (every worker; harmless)."""
        while True:
            await clock.sleep(3600)
            try:
                await db.purge_idempotency_keys(
                    older_than=clock.now() - timedelta(hours=settings.idempotency_ttl_h)
                )
            except DatabaseUnavailableError:
                log.warning("idempotency purge skipped: database unavailable")

    async def observe_cdc_slot() -> None:
        """The replication slot's lag at every scrape (one indexed read of a system view): the
        source side of CDC health, which Debezium's own status does not show."""
        slot_name = settings.cdc_slot_name
        try:
            slot = await db.replication_slot(slot_name)
        except DatabaseUnavailableError:
            return  # logged by the repository; the gauges keep their last values
        metrics.CDC_SLOT_ACTIVE.labels(slot_name).set(1 if slot.active else 0)
        if slot.lag_bytes is not None:
            metrics.CDC_SLOT_LAG.labels(slot_name).set(slot.lag_bytes)

    app = FastAPI(
        title="Pulse ingest",
        version="1.0.0",
        description="Writes products, reviews and market ticks to PostgreSQL. "
        "Every POST needs an Idempotency-Key.",
        lifespan=lifespan,
    )

    async def guard(presented: str | None, scope: Scope) -> ApiKey:
        return await keys.authorize(presented, scope)

    # --- errors: every one a JSON body with `detail`, never a stack trace ---------------
    async def _handle(_: Request, exc: Exception) -> Response:
        answer = problem(exc, retry_after_s=settings.retry_after_s)
        if answer is None:  # not ours: let Starlette answer a bare 500
            raise exc
        status, body, headers = answer
        return Response(body, status_code=status, media_type=_JSON, headers=headers)

    for error_type in ERROR_STATUS:
        app.add_exception_handler(error_type, _handle)

    # --- operations ----------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses=_problem(503, "database unreachable"))
    async def readyz() -> Response:
        await db.ping()
        return _json(200, {"status": "ok", "database": "ok"})

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        await observe_cdc_slot()
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    def body_doc(model: type[BaseModel]) -> dict[str, Any]:
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        return {"requestBody": {"required": True, "content": {_JSON: {"schema": ref}}}}

    @app.post(
        "/v1/products",
        tags=["products"],
        status_code=201,
        responses={**_POST, 200: {"model": schemas.ProductOut}, 201: {"model": schemas.ProductOut}},
        openapi_extra=body_doc(schemas.ProductIn),
    )
    async def upsert_product(
        request: Request, idempotency_key: IdemKey = None, x_api_key: ApiKeyHeader = None
    ) -> Response:
        """Create the product, or update it by `sku` (201 created, 200 updated/unchanged)."""
        key = await guard(x_api_key, Scope.PRODUCTS_WRITE)
        idem = check_key(idempotency_key)
        product = await decode(request, schemas.ProductIn)
        now = clock.now()

        def render(row: asyncpg.Record, created: bool) -> bytes:
            return orjson.dumps({k: row[k] for k in schemas.ProductOut.model_fields})

        result = await db.upsert_product(
            api_key_id=key.id,
            key=idem,
            fingerprint=fingerprint("POST", "/v1/products", await request.body()),
            now=now,
            product=product,
            render=render,
        )
        metrics.ROWS_WRITTEN.labels("products").inc()
        return _stored(result)

    reviews_written = metrics.ROWS_WRITTEN.labels("reviews")

    async def create_review_core(
        presented_key: str | None,
        idempotency_key: str | None,
        content_type: str | None,
        body: bytes,
    ) -> StoredResponse:
        """POST /v1/reviews, shared by the FastAPI route and the raw-ASGI fast path."""
        key = await guard(presented_key, Scope.REVIEWS_WRITE)
        idem = check_key(idempotency_key)
        review = decode_body(content_type, body, schemas.ReviewIn)
        now, review_id = clock.now(), uuid.uuid4()
        result = await writer.submit(
            PendingReview(
                api_key_id=key.id,
                key=idem,
                fingerprint=fingerprint("POST", "/v1/reviews", body),
                now=now,
                review_id=review_id,
                review=review,
                response=orjson.dumps(review_payload(review_id, review, now)),
                trace_parent=tracing.current_traceparent() if traced else None,
            )
        )
        reviews_written.inc()
        return result

    @app.post(
        "/v1/reviews",
        tags=["reviews"],
        status_code=201,
        responses={**_POST, 201: {"model": schemas.ReviewOut}, **_problem(404, "unknown sku")},
        openapi_extra=body_doc(schemas.ReviewIn),
    )
    async def create_review(
        request: Request, idempotency_key: IdemKey = None, x_api_key: ApiKeyHeader = None
    ) -> Response:
        """Store one review for an existing product (404 if `product_sku` is unknown)."""
        result = await create_review_core(
            x_api_key, idempotency_key, request.headers.get("content-type"), await request.body()
        )
        return _stored(result)

    @app.post(
        "/v1/reviews/batch",
        tags=["reviews"],
        status_code=201,
        responses={**_POST, 201: {"model": schemas.ReviewBatchOut}, **_problem(404, "unknown sku")},
        openapi_extra=body_doc(schemas.ReviewBatchIn),
    )
    async def create_reviews(
        request: Request, idempotency_key: IdemKey = None, x_api_key: ApiKeyHeader = None
    ) -> Response:
        """Up to 1,000 reviews in one COPY; all or nothing (404 lists unknown skus)."""
        key = await guard(x_api_key, Scope.REVIEWS_WRITE)
        idem = check_key(idempotency_key)
        batch = await decode(request, schemas.ReviewBatchIn)
        now = clock.now()
        items = [(uuid.uuid4(), r) for r in batch.reviews]
        result = await db.insert_reviews(
            api_key_id=key.id,
            key=idem,
            fingerprint=fingerprint("POST", "/v1/reviews/batch", await request.body()),
            now=now,
            reviews=items,
            response=orjson.dumps({"inserted": len(items), "ids": [i for i, _ in items]}),
            trace_parent=tracing.current_traceparent() if traced else None,
        )
        metrics.ROWS_WRITTEN.labels("reviews").inc(len(items))
        return _stored(result)

    @app.get(
        "/v1/reviews/{review_id}",
        tags=["reviews"],
        responses={**_COMMON, 200: {"model": schemas.ReviewOut}, **_problem(404, "no such review")},
    )
    async def get_review(review_id: uuid.UUID, x_api_key: ApiKeyHeader = None) -> Response:
        await guard(x_api_key, Scope.REVIEWS_READ)
        row = await db.get_review(review_id)
        if row is None:
            raise NotFoundError(f"review {review_id} not found")
        return _json(200, _review_record(row))

    @app.patch(
        "/v1/reviews/{review_id}",
        tags=["reviews"],
        responses={**_COMMON, 200: {"model": schemas.ReviewOut}, **_problem(404, "no such review")},
        openapi_extra=body_doc(schemas.ReviewPatch),
    )
    async def patch_review(
        review_id: uuid.UUID, request: Request, x_api_key: ApiKeyHeader = None
    ) -> Response:
        """Edit title, body and/or rating; `updated_at` moves to now."""
        await guard(x_api_key, Scope.REVIEWS_WRITE)
        patch = await decode(request, schemas.ReviewPatch)
        changes = patch.model_dump(include=patch.model_fields_set)
        row = await db.update_review(
            review_id,
            changes=changes,
            now=clock.now(),
            trace_parent=tracing.current_traceparent() if traced else None,
        )
        if row is None:
            raise NotFoundError(f"review {review_id} not found")
        return _json(200, _review_record(row))

    @app.delete(
        "/v1/reviews/{review_id}",
        tags=["reviews"],
        status_code=204,
        responses={**_COMMON, **_problem(404, "no such review")},
    )
    async def delete_review(review_id: uuid.UUID, x_api_key: ApiKeyHeader = None) -> Response:
        await guard(x_api_key, Scope.REVIEWS_DELETE)
        if not await db.delete_review(review_id):
            raise NotFoundError(f"review {review_id} not found")
        return Response(status_code=204)

    @app.post(
        "/v1/ticks/batch",
        tags=["market"],
        status_code=201,
        responses={**_POST, 201: {"model": schemas.TickBatchOut}},
        openapi_extra=body_doc(schemas.TickBatchIn),
    )
    async def create_ticks(
        request: Request, idempotency_key: IdemKey = None, x_api_key: ApiKeyHeader = None
    ) -> Response:
        """Up to 10,000 ticks in one COPY; prices exact decimals as strings."""
        key = await guard(x_api_key, Scope.TICKS_WRITE)
        idem = check_key(idempotency_key)
        check_content_type(request.headers.get("content-type"))
        body = await request.body()
        now = clock.now()
        batch = parse_tick_batch(body, now=now)
        trace_parent = tracing.current_traceparent() if traced else None
        result = await db.insert_ticks(
            api_key_id=key.id,
            key=idem,
            fingerprint=(
                fingerprint("POST", "/v1/ticks/batch", body)
                if batch.document is None
                else fingerprint_document("POST", "/v1/ticks/batch", batch.document)
            ),
            now=now,
            copy_text=copy_text(batch.rows, ingested_at=now, trace_parent=trace_parent),
            columns=COPY_COLUMNS if trace_parent is None else TRACED_COPY_COLUMNS,
            response=orjson.dumps({"inserted": len(batch.rows)}),
        )
        metrics.ROWS_WRITTEN.labels("market_ticks").inc(len(batch.rows))
        return _stored(result)

    app.openapi = _openapi_with_bodies(app)  # type: ignore[method-assign]  # FastAPI's documented override
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, access_log=settings.access_log)
    app.state.review_handler = create_review_core
    return app


def edge(app: FastAPI, settings: IngestSettings) -> ASGIApp:
    """What uvicorn serves: the FastAPI app, behind the raw-ASGI review fast path if enabled,
    both inside a request span when tracing is on (servicekit.tracing)."""
    served: ASGIApp = app
    if settings.fast_path:
        served = ReviewFastPath(
            app,
            handler=app.state.review_handler,
            retry_after_s=settings.retry_after_s,
            max_body_bytes=settings.max_body_bytes,
            access_log=settings.access_log,
        )
    if tracing.ENABLED:
        served = tracing.TracingMiddleware(served, route=route_of)
    return served


_REVIEW_PREFIX = "/v1/reviews/"
_FIXED_REVIEW_PATHS = frozenset({"/v1/reviews/batch"})


def route_of(path: str) -> str:
    """A request path as its route (span names stay few): `/v1/reviews/<id>` →
    `/v1/reviews/{review_id}`; every other route is a fixed path."""
    if path.startswith(_REVIEW_PREFIX) and path not in _FIXED_REVIEW_PATHS:
        return _REVIEW_PREFIX + "{review_id}"
    return path


def _openapi_with_bodies(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus the request-body models referenced by `openapi_extra`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, defs = models_json_schema(
            [(m, "validation") for m in _BODY_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            defs.get("$defs", {})
        )
        app.openapi_schema = document
        return document

    return openapi


def _db_config(settings: IngestSettings) -> DatabaseConfig:
    return DatabaseConfig(
        dsn=settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        acquire_timeout_s=settings.db_acquire_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
        batch_statement_timeout_s=settings.db_batch_statement_timeout_s,
    )


def build_app() -> ASGIApp:
    """uvicorn's factory (`ingest.app:build_app`): each worker reads the environment itself."""
    from servicekit.logging import configure_logging
    from servicekit.settings import load_settings

    from ingest.middleware import RequestIdFilter

    settings = load_settings(IngestSettings)
    configure_logging("ingest", level=settings.log_level, json=settings.log_json)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    tracing.configure("ingest")
    return edge(create_app(settings), settings)
