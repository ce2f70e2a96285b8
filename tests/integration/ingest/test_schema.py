"""The migrated database matches the SQLModel tables and the `contracts.rows` column contract,
and `reviews` has REPLICA IDENTITY FULL."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from contracts.rows import MarketTickRow, ProductRow, ReviewRow
from ingest.migrate import sqlalchemy_url
from ingest.tables import METADATA
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


async def test_migrated_schema_matches_the_sqlmodel_tables(
    ingest_api: str, stack_env: dict[str, str]
) -> None:
    engine = create_async_engine(sqlalchemy_url(stack_env["DATABASE_URL"]))
    try:
        async with engine.connect() as conn:
            diff: list[Any] = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), METADATA)
            )
    finally:
        await engine.dispose()
    ours = {t.name for t in METADATA.sorted_tables}
    # Other services may create their own tables in this database: only ours are compared.
    relevant = [d for d in diff if not (d[0] == "remove_table" and d[1].name not in ours)]
    assert relevant == []


@pytest.mark.parametrize(
    ("table", "row"),
    [("products", ProductRow), ("reviews", ReviewRow), ("market_ticks", MarketTickRow)],
)
async def test_columns_are_exactly_the_row_contract(
    ingest_api: str, stack_env: dict[str, str], table: str, row: type
) -> None:
    conn = await asyncpg.connect(stack_env["DATABASE_URL"], timeout=10)
    try:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1",
            table,
        )
        identity = await conn.fetchval(
            "SELECT relreplident::text FROM pg_class WHERE oid = 'public.reviews'::regclass"
        )
    finally:
        await conn.close()
    assert {c[0] for c in columns} == set(row.model_fields)
    assert identity == "f"
