"""The tables ingest owns, as SQLModel classes: the column contract of `contracts.rows`.

Alembic migrations create them (see `migrations/versions`); an integration test compares the
migrated database with this metadata so the two cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

_NOW = text("now()")


def _ts(*, nullable: bool = False, default: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(
        DateTime(timezone=True), nullable=nullable, server_default=_NOW if default else None
    )


class Product(SQLModel, table=True):
    __tablename__ = "products"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=False), primary_key=True)
    )
    sku: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    brand: str | None = Field(default=None, sa_column=Column(String(100)))
    category: str | None = Field(default=None, sa_column=Column(String(100)))
    created_at: datetime | None = Field(default=None, sa_column=_ts())
    updated_at: datetime | None = Field(default=None, sa_column=_ts())


class Review(SQLModel, table=True):
    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="reviews_rating_range"),
        Index("reviews_product_id_idx", "product_id"),
    )

    id: UUID = Field(sa_column=Column(postgresql.UUID(as_uuid=True), primary_key=True))
    product_id: int = Field(sa_column=Column(BigInteger, ForeignKey("products.id"), nullable=False))
    rating: int = Field(sa_column=Column(SmallInteger, nullable=False))
    title: str | None = Field(default=None, sa_column=Column(String(200)))
    body: str = Field(sa_column=Column(Text, nullable=False))
    author_name: str | None = Field(default=None, sa_column=Column(String(200)))
    author_email: str | None = Field(default=None, sa_column=Column(String(254)))
    locale: str | None = Field(default=None, sa_column=Column(String(35)))
    source: str = Field(
        default="app", sa_column=Column(String(32), nullable=False, server_default="app")
    )
    external_id: str | None = Field(default=None, sa_column=Column(String(200)))
    created_at: datetime | None = Field(default=None, sa_column=_ts())
    updated_at: datetime | None = Field(default=None, sa_column=_ts())
    # The W3C traceparent of the request that wrote the row (tracing on), for cdc_processor.
    trace_parent: str | None = Field(default=None, sa_column=Column(Text))


class MarketTick(SQLModel, table=True):
    __tablename__ = "market_ticks"
    __table_args__ = (
        CheckConstraint("asset_class IN ('equity', 'crypto')", name="market_ticks_asset_class"),
        CheckConstraint("price > 0", name="market_ticks_price_positive"),
        CheckConstraint("size >= 0", name="market_ticks_size_not_negative"),
        Index("market_ticks_symbol_event_time_idx", "symbol", "event_time"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=False), primary_key=True)
    )
    symbol: str = Field(sa_column=Column(String(32), nullable=False))
    asset_class: str = Field(sa_column=Column(String(16), nullable=False))
    price: Decimal = Field(sa_column=Column(Numeric(38, 18), nullable=False))
    size: Decimal = Field(sa_column=Column(Numeric(38, 18), nullable=False))
    event_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    venue: str | None = Field(default=None, sa_column=Column(String(64)))
    ingested_at: datetime | None = Field(default=None, sa_column=_ts())
    trace_parent: str | None = Field(default=None, sa_column=Column(Text))


class ApiKeyRecord(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=False), primary_key=True)
    )
    name: str = Field(sa_column=Column(String(100), nullable=False, unique=True))
    key_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False, unique=True))
    scopes: list[str] = Field(sa_column=Column(postgresql.ARRAY(Text), nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_ts())
    disabled_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True, default=False))


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("idempotency_keys_created_at_idx", "created_at"),)

    api_key_id: int = Field(
        sa_column=Column(
            BigInteger, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
        )
    )
    key: str = Field(sa_column=Column(String(255), primary_key=True))
    fingerprint: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status_code: int | None = Field(default=None, sa_column=Column(SmallInteger))
    response: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime | None = Field(default=None, sa_column=_ts())


METADATA = SQLModel.metadata
