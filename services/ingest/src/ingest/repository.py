"""PostgreSQL adapter on a raw asyncpg pool (the hot path: one round trip per single review).

Every public method runs under a deadline. Connection loss, refusal, shutdown, pool
exhaustion and timeouts all surface as `DatabaseUnavailableError`, which the API answers with 503
and Retry-After; the pool reconnects by itself once PostgreSQL is back.

Idempotency is stored in the same transaction as the write it guards, so a write is
acknowledged exactly when its idempotency record (with the response to replay) is committed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from servicekit import cdc_health

from ingest.auth import ApiKey, parse_scopes
from ingest.idempotency import StoredResponse, replay
from ingest.schemas import ProductIn, ReviewIn

log = logging.getLogger(__name__)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,  # includes "connection is closed"
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, starting up, canceled
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by a cancel
)


_INTERRUPTED: tuple[type[BaseException], ...] = (*_UNAVAILABLE, asyncio.CancelledError)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool `reset` hook: nothing to undo. asyncpg still rolls back an open transaction;
    the default hook's extra `RESET ALL; UNLISTEN *; ...` round trip on every release cost
    a statement per request, and this code never LISTENs, holds advisory locks or changes
    session settings (only `SET LOCAL`, which ends with its transaction)."""


class DatabaseUnavailableError(Exception):
    """PostgreSQL is down, restarting, or too slow to answer within the deadline."""


class ProductNotFoundError(Exception):
    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(f"unknown product sku: {', '.join(skus)}")
        self.skus = list(skus)


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    dsn: str
    min_size: int
    max_size: int
    acquire_timeout_s: float
    statement_timeout_s: float
    connect_timeout_s: float
    # COPY of 10,000 rows can take longer than a single insert may; acquiring a connection
    # (the down/unreachable case) keeps the short acquire timeout all the same.
    batch_statement_timeout_s: float = 5.0


REVIEW_COLUMNS = (
    "id, product_id, rating, title, body, author_name, author_email, locale, source, "
    "external_id, created_at, updated_at"
)


def _insert_review_sql(*, traced: bool) -> str:
    """One review: resolve the product, claim the key with its response, insert. `traced`
    also writes $16 into `trace_parent` (tracing on); untraced, the column stays NULL and the
    statement is the one from before tracing existed."""
    column, value = (", trace_parent", ", $16") if traced else ("", "")
    return f"""
WITH p AS (SELECT id FROM products WHERE sku = $1),
idem AS (
    INSERT INTO idempotency_keys (api_key_id, key, fingerprint, status_code, response, created_at)
    SELECT $2, $3, $4, 201, $5, $6 FROM p
    ON CONFLICT (api_key_id, key) DO NOTHING
    RETURNING 1
),
ins AS (
    INSERT INTO reviews (id, product_id, rating, title, body, author_name, author_email,
                         locale, source, external_id, created_at, updated_at{column})
    SELECT $7, p.id, $8, $9, $10, $11, $12, $13, $14, $15, $6, $6{value} FROM p, idem
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM p) AS product_found,
       EXISTS (SELECT 1 FROM ins) AS inserted,
       k.fingerprint, k.status_code, k.response
FROM (SELECT 1) AS one
LEFT JOIN idempotency_keys k ON k.api_key_id = $2 AND k.key = $3
"""  # noqa: S608  # the only interpolations are the fixed fragments above


_INSERT_REVIEW = _insert_review_sql(traced=False)
_INSERT_REVIEW_TRACED = _insert_review_sql(traced=True)


def _insert_reviews_sql(*, traced: bool) -> str:
    """`_insert_review_sql` for N reviews; `traced` adds the $17 array of traceparents."""
    array, name, column, value = (
        (", $17::text[]", ", trace_parent", ", trace_parent", ", p.trace_parent")
        if traced
        else ("", "", "", "")
    )
    return f"""
WITH input AS (
    SELECT * FROM unnest(
        $1::int[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::timestamptz[],
        $7::uuid[], $8::text[], $9::int2[], $10::text[], $11::text[], $12::text[],
        $13::text[], $14::text[], $15::text[], $16::text[]{array}
    ) AS t(ord, api_key_id, key, fingerprint, response, now, id, sku, rating, title, body,
           author_name, author_email, locale, source, external_id{name})
),
p AS (SELECT input.*, products.id AS product_id FROM input JOIN products USING (sku)),
idem AS (
    INSERT INTO idempotency_keys (api_key_id, key, fingerprint, status_code, response, created_at)
    SELECT api_key_id, key, fingerprint, 201, response, now FROM p
    ON CONFLICT (api_key_id, key) DO NOTHING
    RETURNING api_key_id, key
),
ins AS (
    INSERT INTO reviews (id, product_id, rating, title, body, author_name, author_email,
                         locale, source, external_id, created_at, updated_at{column})
    SELECT p.id, p.product_id, p.rating, p.title, p.body, p.author_name, p.author_email,
           p.locale, p.source, p.external_id, p.now, p.now{value}
    FROM p JOIN idem USING (api_key_id, key)
    RETURNING id
)
SELECT input.ord,
       EXISTS (SELECT 1 FROM p WHERE p.ord = input.ord) AS product_found,
       EXISTS (SELECT 1 FROM ins WHERE ins.id = input.id) AS inserted,
       k.fingerprint, k.status_code, k.response
FROM input
LEFT JOIN idempotency_keys k ON k.api_key_id = input.api_key_id AND k.key = input.key
ORDER BY input.ord
"""  # noqa: S608  # the only interpolations are the fixed fragments above


# The coalesced form of _INSERT_REVIEW: N reviews (distinct idempotency keys), one statement,
# one commit. Row `ord` i answers input i, read exactly like _INSERT_REVIEW's single row.
_INSERT_REVIEWS = _insert_reviews_sql(traced=False)
_INSERT_REVIEWS_TRACED = _insert_reviews_sql(traced=True)

_SELECT_REVIEW = """
SELECT r.id, r.product_id, r.rating, r.title, r.body, r.author_name, r.author_email, r.locale,
       r.source, r.external_id, r.created_at, r.updated_at, p.sku AS product_sku
FROM reviews r JOIN products p ON p.id = r.product_id WHERE r.id = $1
"""


class Database:
    def __init__(self, config: DatabaseConfig) -> None:
        self._config = config
        self._pool: asyncpg.Pool | None = None
        # A whole operation (acquire + statements) must finish within this.
        self._deadline_s = config.acquire_timeout_s + config.statement_timeout_s

    async def start(self) -> None:
        """Create the pool without connecting: the app starts even while PostgreSQL is down."""
        self._pool = await asyncpg.create_pool(
            self._config.dsn,
            min_size=self._config.min_size,
            max_size=self._config.max_size,
            timeout=self._config.connect_timeout_s,
            command_timeout=self._config.statement_timeout_s,
            max_inactive_connection_lifetime=60.0,
            reset=_keep_session,
            server_settings={
                "statement_timeout": str(int(self._config.statement_timeout_s * 1000)),
                "idle_in_transaction_session_timeout": "5000",
                "application_name": "pulse-ingest",
                # Every statement here is prepared once and run thousands of times with
                # plans that don't depend on the values; a custom plan per execution cost
                # ~0.2 ms of backend CPU per coalesced review insert (measured).
                "plan_cache_mode": "force_generic_plan",
            },
        )

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5.0)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    @asynccontextmanager
    async def _connection(
        self, *, statement_timeout_s: float | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise DatabaseUnavailableError("pool not started")
        deadline_s = (
            self._deadline_s
            if statement_timeout_s is None
            else self._config.acquire_timeout_s + statement_timeout_s
        )
        conn: asyncpg.Connection | None = None
        started = time.monotonic()
        try:
            async with asyncio.timeout(deadline_s):
                conn = await self._pool.acquire(timeout=self._config.acquire_timeout_s)
                try:
                    yield conn
                except _INTERRUPTED:
                    # Interrupted mid-protocol (timeout, server gone): never hand it out again,
                    # or the next user gets "another operation is in progress".
                    conn.terminate()
                    raise
                finally:
                    await self._pool.release(conn)
        except _UNAVAILABLE as exc:
            # Say which step failed, after how long, and which setting limits it: an empty
            # TimeoutError from the pool and one from a slow statement otherwise read alike.
            step = "acquiring a connection" if conn is None else "running the statement"
            reason = f"{type(exc).__name__} while {step} after {time.monotonic() - started:.2f} s"
            if str(exc):
                reason += f": {exc}"
            if isinstance(exc, TimeoutError):
                config = self._config
                if conn is None:
                    reason += f" (INGEST_DB_ACQUIRE_TIMEOUT_S={config.acquire_timeout_s:g})"
                elif statement_timeout_s is None:
                    reason += f" (INGEST_DB_STATEMENT_TIMEOUT_S={config.statement_timeout_s:g})"
                else:
                    reason += f" (INGEST_DB_BATCH_STATEMENT_TIMEOUT_S={statement_timeout_s:g})"
            log.warning("database unavailable: %s", reason)
            raise DatabaseUnavailableError(reason) from exc

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def replication_slot(self, slot_name: str) -> cdc_health.SlotState:
        """The CDC replication slot's state (ingest exports it on /metrics)."""
        async with self._connection() as conn:
            return await cdc_health.read_slot(conn, slot_name)

    # --- api keys -------------------------------------------------------------------
    async def load_api_keys(self) -> dict[bytes, ApiKey]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT id, name, key_hash, scopes FROM api_keys WHERE disabled_at IS NULL"
            )
        return {
            bytes(r["key_hash"]): ApiKey(
                id=r["id"],
                name=r["name"],
                key_hash=bytes(r["key_hash"]),
                scopes=parse_scopes(r["scopes"]),
            )
            for r in rows
        }

    async def upsert_api_key(self, *, name: str, key_hash: bytes, scopes: Sequence[str]) -> int:
        async with self._connection() as conn:
            key_id: int = await conn.fetchval(
                """
                INSERT INTO api_keys (name, key_hash, scopes) VALUES ($1, $2, $3)
                ON CONFLICT (name) DO UPDATE
                    SET key_hash = EXCLUDED.key_hash, scopes = EXCLUDED.scopes, disabled_at = NULL
                RETURNING id
                """,
                name,
                key_hash,
                list(scopes),
            )
        return key_id

    # --- idempotent writes ------------------------------------------------------------
    async def _idempotent(
        self,
        *,
        api_key_id: int,
        key: str,
        fingerprint: bytes,
        now: datetime,
        write: Callable[[asyncpg.Connection], Awaitable[StoredResponse]],
        batch: bool = False,
    ) -> StoredResponse:
        """1. claim the key  2. write  3. store the response — all in one transaction.

        A concurrent request with the same key blocks on the claim until the first commits,
        then replays its stored response. A rollback (bad input, crash) frees the key.
        """
        timeout_s = self._config.batch_statement_timeout_s if batch else None
        async with self._connection(statement_timeout_s=timeout_s) as conn, conn.transaction():
            if batch:
                ms = int(self._config.batch_statement_timeout_s * 1000)
                await conn.execute(f"SET LOCAL statement_timeout = {ms}")
            claimed = await conn.fetchval(
                """
                INSERT INTO idempotency_keys (api_key_id, key, fingerprint, created_at)
                VALUES ($1, $2, $3, $4) ON CONFLICT (api_key_id, key) DO NOTHING RETURNING true
                """,
                api_key_id,
                key,
                fingerprint,
                now,
            )
            if not claimed:
                return await self._replay(conn, api_key_id, key, fingerprint)
            result = await write(conn)
            await conn.execute(
                "UPDATE idempotency_keys SET status_code = $3, response = $4 "
                "WHERE api_key_id = $1 AND key = $2",
                api_key_id,
                key,
                result.status_code,
                result.body,
            )
            return result

    @staticmethod
    async def _replay(
        conn: asyncpg.Connection, api_key_id: int, key: str, fingerprint: bytes
    ) -> StoredResponse:
        row = await conn.fetchrow(
            "SELECT fingerprint, status_code, response FROM idempotency_keys "
            "WHERE api_key_id = $1 AND key = $2",
            api_key_id,
            key,
        )
        return _replay_row(row, fingerprint)

    async def upsert_product(
        self,
        *,
        api_key_id: int,
        key: str,
        fingerprint: bytes,
        now: datetime,
        product: ProductIn,
        render: Callable[[asyncpg.Record, bool], bytes],
    ) -> StoredResponse:
        async def write(conn: asyncpg.Connection) -> StoredResponse:
            # The WHERE skips no-op updates, so an unchanged product emits no change event.
            row = await conn.fetchrow(
                """
                INSERT INTO products (sku, name, brand, category, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $5)
                ON CONFLICT (sku) DO UPDATE
                    SET name = EXCLUDED.name, brand = EXCLUDED.brand,
                        category = EXCLUDED.category, updated_at = EXCLUDED.updated_at
                    WHERE (products.name, products.brand, products.category)
                          IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.brand, EXCLUDED.category)
                RETURNING id, sku, name, brand, category, created_at, updated_at,
                          (xmax = 0) AS created
                """,
                product.sku,
                product.name,
                product.brand,
                product.category,
                now,
            )
            if row is None:
                row = await conn.fetchrow(
                    "SELECT id, sku, name, brand, category, created_at, updated_at, "
                    "false AS created FROM products WHERE sku = $1",
                    product.sku,
                )
            assert row is not None
            created = bool(row["created"])
            return StoredResponse(201 if created else 200, render(row, created))

        return await self._idempotent(
            api_key_id=api_key_id, key=key, fingerprint=fingerprint, now=now, write=write
        )

    async def insert_review(
        self,
        *,
        api_key_id: int,
        key: str,
        fingerprint: bytes,
        now: datetime,
        review_id: UUID,
        review: ReviewIn,
        response: bytes,
        trace_parent: str | None = None,
    ) -> StoredResponse:
        """One statement: resolve the product, claim the key with its response, insert."""
        traced = () if trace_parent is None else (trace_parent,)
        async with self._connection() as conn:
            row = await conn.fetchrow(
                _INSERT_REVIEW if trace_parent is None else _INSERT_REVIEW_TRACED,
                review.product_sku,
                api_key_id,
                key,
                fingerprint,
                response,
                now,
                review_id,
                review.rating,
                review.title,
                review.body,
                review.author_name,
                review.author_email,
                review.locale,
                review.source,
                review.external_id,
                *traced,
            )
        assert row is not None
        return review_outcome(row, response=response, fingerprint=fingerprint, review=review)

    async def insert_review_rows(
        self, items: Sequence[PendingReview], *, traced: bool = False
    ) -> list[asyncpg.Record]:
        """_INSERT_REVIEWS for items whose (api_key_id, key) pairs are all distinct; `traced`
        (tracing on in this process): the form that writes each item's traceparent."""
        columns: list[list[Any]] = [[] for _ in range(16)]
        for ord_, it in enumerate(items):
            r = it.review
            values = (
                ord_, it.api_key_id, it.key, it.fingerprint, it.response, it.now, it.review_id,
                r.product_sku, r.rating, r.title, r.body, r.author_name, r.author_email,
                r.locale, r.source, r.external_id,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        statement = _INSERT_REVIEWS
        if traced:
            statement = _INSERT_REVIEWS_TRACED
            columns.append([it.trace_parent for it in items])
        async with self._connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(statement, *columns)
        return rows

    async def insert_reviews(
        self,
        *,
        api_key_id: int,
        key: str,
        fingerprint: bytes,
        now: datetime,
        reviews: Sequence[tuple[UUID, ReviewIn]],
        response: bytes,
        trace_parent: str | None = None,
    ) -> StoredResponse:
        columns = REVIEW_COLUMNS.split(", ")
        traced: tuple[str, ...] = ()
        if trace_parent is not None:
            columns.append("trace_parent")
            traced = (trace_parent,)

        async def write(conn: asyncpg.Connection) -> StoredResponse:
            skus = sorted({r.product_sku for _, r in reviews})
            found = dict(
                await conn.fetch("SELECT sku, id FROM products WHERE sku = ANY($1::text[])", skus)
            )
            missing = [s for s in skus if s not in found]
            if missing:
                raise ProductNotFoundError(missing)
            records = [
                (
                    rid, found[r.product_sku], r.rating, r.title, r.body, r.author_name,
                    r.author_email, r.locale, r.source, r.external_id, now, now, *traced,
                )
                for rid, r in reviews
            ]  # fmt: skip
            await conn.copy_records_to_table(
                "reviews",
                records=records,
                columns=columns,
                timeout=self._config.batch_statement_timeout_s,
            )
            return StoredResponse(201, response)

        return await self._idempotent(
            api_key_id=api_key_id,
            key=key,
            fingerprint=fingerprint,
            now=now,
            write=write,
            batch=True,
        )

    async def insert_ticks(
        self,
        *,
        api_key_id: int,
        key: str,
        fingerprint: bytes,
        now: datetime,
        copy_text: bytes,
        columns: Sequence[str],
        response: bytes,
    ) -> StoredResponse:
        """One COPY in text format: PostgreSQL parses the decimals and timestamps itself."""

        async def write(conn: asyncpg.Connection) -> StoredResponse:
            await conn.copy_to_table(
                "market_ticks",
                source=io.BytesIO(copy_text),
                columns=list(columns),
                format="text",
                timeout=self._config.batch_statement_timeout_s,
            )
            return StoredResponse(201, response)

        return await self._idempotent(
            api_key_id=api_key_id,
            key=key,
            fingerprint=fingerprint,
            now=now,
            write=write,
            batch=True,
        )

    # --- single-review reads and edits -----------------------------------------------
    async def get_review(self, review_id: UUID) -> asyncpg.Record | None:
        async with self._connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(_SELECT_REVIEW, review_id)
        return row

    async def update_review(
        self,
        review_id: UUID,
        *,
        changes: dict[str, Any],
        now: datetime,
        trace_parent: str | None = None,
    ) -> asyncpg.Record | None:
        """Untraced, `trace_parent` keeps its value: the edit's change event then names the
        trace of the row's last traced write (only when tracing was on for that write)."""
        if trace_parent is not None:
            changes = {**changes, "trace_parent": trace_parent}
        present = [n for n in ("title", "body", "rating", "trace_parent") if n in changes]
        sets = [f"{name} = ${i}" for i, name in enumerate(present, start=3)]
        async with self._connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(
                f"""
                WITH u AS (
                    UPDATE reviews SET {", ".join([*sets, "updated_at = $2"])}
                    WHERE id = $1 RETURNING *
                )
                SELECT u.{REVIEW_COLUMNS.replace(", ", ", u.")}, p.sku AS product_sku
                FROM u JOIN products p ON p.id = u.product_id
                """,  # noqa: S608  # column names come from a fixed tuple
                review_id,
                now,
                *[changes[name] for name in present],
            )
        return row

    async def delete_review(self, review_id: UUID) -> bool:
        async with self._connection() as conn:
            status: str = await conn.execute("DELETE FROM reviews WHERE id = $1", review_id)
        return status.endswith(" 1")

    async def purge_idempotency_keys(self, *, older_than: datetime) -> int:
        async with self._connection() as conn:
            status: str = await conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1", older_than
            )
        return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True, slots=True)
class PendingReview:
    """One single-review insert, as the coalescing writer queues it."""

    api_key_id: int
    key: str
    fingerprint: bytes
    now: datetime
    review_id: UUID
    review: ReviewIn
    response: bytes
    trace_parent: str | None = None  # the request's W3C traceparent (tracing on)


def review_outcome(
    row: asyncpg.Record, *, response: bytes, fingerprint: bytes, review: ReviewIn
) -> StoredResponse:
    """Read one result row of _INSERT_REVIEW(S): inserted, replayed, in flight or 404."""
    if row["inserted"]:
        return StoredResponse(201, response)
    if row["fingerprint"] is not None or row["product_found"]:
        return _replay_row(row, fingerprint)
    raise ProductNotFoundError([review.product_sku])


def _replay_row(row: asyncpg.Record | None, fingerprint: bytes) -> StoredResponse:
    if row is None or row["fingerprint"] is None:
        # The claim vanished (its transaction rolled back) between our two statements.
        return replay(stored_fingerprint=fingerprint, stored=None, request_fingerprint=fingerprint)
    stored = (
        StoredResponse(int(row["status_code"]), bytes(row["response"]))
        if row["status_code"] is not None
        else None
    )
    return replay(
        stored_fingerprint=bytes(row["fingerprint"]), stored=stored, request_fingerprint=fingerprint
    )
