"""Add reviews.trace_parent and market_ticks.trace_parent (nullable text): the W3C traceparent
of the request that wrote the row, which Debezium carries to cdc_processor (tracing on).

A nullable column without a default is a catalogue change only: no table rewrite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = ("reviews", "market_ticks")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("trace_parent", sa.Text, nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "trace_parent")
