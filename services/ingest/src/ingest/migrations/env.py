"""Alembic environment: async engine on asyncpg, serialized by a PostgreSQL advisory lock.

Several processes (services' test fixtures, replicas at start-up) may run `migrate` at once;
the lock makes the second wait and then find nothing to do, instead of racing on DDL.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ingest.tables import METADATA

_MIGRATION_LOCK_ID = 0x5055_4C53_0001  # "PULS" + 1: any constant other tools don't use

config = context.config


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    try:
        context.configure(connection=connection, target_metadata=METADATA)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
        connection.commit()


async def _run_online() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=METADATA)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
