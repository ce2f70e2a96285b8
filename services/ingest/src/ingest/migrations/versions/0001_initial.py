"""Create products, reviews (REPLICA IDENTITY FULL), market_ticks, api_keys, idempotency_keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.text("now()")


def _ts(name: str, *, nullable: bool = False, default: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=_NOW if default else None,
    )


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("sku", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("brand", sa.String(100)),
        sa.Column("category", sa.String(100)),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "reviews",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("product_id", sa.BigInteger, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("title", sa.String(200)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("author_name", sa.String(200)),
        sa.Column("author_email", sa.String(254)),
        sa.Column("locale", sa.String(35)),
        sa.Column("source", sa.String(32), nullable=False, server_default="app"),
        sa.Column("external_id", sa.String(200)),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="reviews_rating_range"),
    )
    op.create_index("reviews_product_id_idx", "reviews", ["product_id"])
    # Updates and deletes then carry the whole old row in Debezium's `before`.
    op.execute("ALTER TABLE reviews REPLICA IDENTITY FULL")
    op.create_table(
        "market_ticks",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("asset_class", sa.String(16), nullable=False),
        sa.Column("price", sa.Numeric(38, 18), nullable=False),
        sa.Column("size", sa.Numeric(38, 18), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("venue", sa.String(64)),
        _ts("ingested_at"),
        sa.CheckConstraint("asset_class IN ('equity', 'crypto')", name="market_ticks_asset_class"),
        sa.CheckConstraint("price > 0", name="market_ticks_price_positive"),
        sa.CheckConstraint("size >= 0", name="market_ticks_size_not_negative"),
    )
    op.create_index("market_ticks_symbol_event_time_idx", "market_ticks", ["symbol", "event_time"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("key_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("scopes", postgresql.ARRAY(sa.Text), nullable=False),
        _ts("created_at"),
        _ts("disabled_at", nullable=True, default=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "api_key_id",
            sa.BigInteger,
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.LargeBinary, nullable=False),
        sa.Column("status_code", sa.SmallInteger),
        sa.Column("response", sa.LargeBinary),
        _ts("created_at"),
    )
    op.create_index("idempotency_keys_created_at_idx", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    for table in ("idempotency_keys", "api_keys", "market_ticks", "reviews", "products"):
        op.drop_table(table)
