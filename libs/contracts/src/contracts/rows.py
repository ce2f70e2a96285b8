"""Row images of Pulse's PostgreSQL tables as Debezium writes them (JSON converter).

The ingest service owns the tables; these models are the column contract it must keep.
With `decimal.handling.mode=string` NUMERIC arrives as a string; `timestamptz` arrives as an
ISO-8601 string with zone; `uuid` as its canonical string.

`trace_parent` (reviews, market ticks) is the W3C traceparent of the API request that wrote
the row, when tracing was on (servicekit.tracing): how a trace crosses PostgreSQL and
Debezium. It is transport, not data: no emitted event or archived dataset carries it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.types import ExactDecimal, UtcDatetime


class AssetClass(StrEnum):
    EQUITY = "equity"
    CRYPTO = "crypto"


class _Row(BaseModel):
    # Debezium may add columns before services learn them: ignore, never fail.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProductRow(_Row):
    id: int
    sku: str
    name: str
    brand: str | None = None
    category: str | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


Rating = Annotated[int, Field(ge=1, le=5)]


class ReviewRow(_Row):
    id: UUID
    product_id: int
    rating: Rating
    title: str | None = None
    body: str
    author_name: str | None = None
    author_email: str | None = None
    locale: str | None = None
    source: str = "app"
    external_id: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    trace_parent: str | None = None


class MarketTickRow(_Row):
    id: int
    symbol: str
    asset_class: AssetClass
    price: ExactDecimal
    size: ExactDecimal
    event_time: UtcDatetime
    venue: str | None = None
    ingested_at: UtcDatetime | None = None
    trace_parent: str | None = None
