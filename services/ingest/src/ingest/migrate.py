"""`python -m ingest migrate`: Alembic upgrade to head, then seed the local dev key.

Idempotent: running it twice, or from several processes at once, leaves one schema.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from ingest.auth import ALL_SCOPES, hash_key
from ingest.repository import Database, DatabaseConfig
from ingest.settings import IngestSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
DEV_KEY_NAME = "local-dev"


def sqlalchemy_url(dsn: str) -> str:
    """postgresql://… → postgresql+asyncpg://… (SQLAlchemy names its driver in the scheme)."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like postgresql://user@host:port/db")
    if scheme in ("postgresql", "postgres"):
        scheme = "postgresql+asyncpg"
    return f"{scheme}://{rest}"


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%': escape it (URL-encoded passwords contain it).
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
    return config


async def seed_dev_key(settings: IngestSettings) -> None:
    """Store PULSE_API_KEY (hashed) with every scope, when it is set."""
    if settings.pulse_api_key is None:
        return
    db = Database(
        DatabaseConfig(
            dsn=settings.database_url.get_secret_value(),
            min_size=0,
            max_size=1,
            acquire_timeout_s=10.0,
            statement_timeout_s=10.0,
            connect_timeout_s=10.0,
        )
    )
    await db.start()
    try:
        await db.upsert_api_key(
            name=DEV_KEY_NAME,
            key_hash=hash_key(settings.pulse_api_key.get_secret_value()),
            scopes=sorted(s.value for s in ALL_SCOPES),
        )
    finally:
        await db.close()


def migrate(settings: IngestSettings) -> None:
    command.upgrade(alembic_config(settings.database_url.get_secret_value()), "head")
    asyncio.run(seed_dev_key(settings))
    log.info(
        "database migrated to head; dev key %s", "seeded" if settings.pulse_api_key else "unset"
    )
