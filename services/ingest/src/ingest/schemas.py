"""Request and response bodies of the HTTP API: strict, `extra="forbid"`, no I/O.

Text is checked for NUL bytes and lone surrogates here, so PostgreSQL never sees them (it
would reject the former with a server error and cannot store the latter as UTF-8).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal as PyDecimal
from typing import Annotated, Any
from uuid import UUID

from contracts.rows import AssetClass
from contracts.types import _fits_precision, _parse_decimal
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

MAX_BATCH_REVIEWS = 1_000
MAX_BATCH_TICKS = 10_000


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return value


_Clean = AfterValidator(_clean_text)

Sku = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"), _Clean
]
# Hot in 10,000-tick batches: constraints checked in pydantic-core, no Python validator.
Symbol = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/^=-]*$")
]
Locale = Annotated[
    str,
    Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$"),
    _Clean,
]
Source = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$"), _Clean
]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"), _Clean]
Name = Annotated[str, Field(min_length=1, max_length=200), _Clean]
Label = Annotated[str, Field(max_length=100), _Clean]
Title = Annotated[str, Field(max_length=200), _Clean]
Body = Annotated[str, Field(min_length=1, max_length=5000), _Clean]
ExternalId = Annotated[str, Field(min_length=1, max_length=200), _Clean]
Venue = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
# Decimals travel as strings; the schema says so (the validator also takes JSON integers).
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,18})?")
_DECIMAL_DOC = {"type": "string", "pattern": r"^[0-9]{1,20}(\.[0-9]{1,18})?$"}


def _money(value: Any) -> Any:
    """contracts' ExactDecimal rules in one call: a plain "123.45" string (the usual case,
    10,000 per tick batch) takes a regex fast path; anything else gets the full checks."""
    if type(value) is str and _PLAIN_DECIMAL.fullmatch(value):
        return PyDecimal(value)
    return _fits_precision(_parse_decimal(value))


Price = Annotated[PyDecimal, BeforeValidator(_money), Field(gt=0), WithJsonSchema(_DECIMAL_DOC)]
Size = Annotated[PyDecimal, BeforeValidator(_money), Field(ge=0), WithJsonSchema(_DECIMAL_DOC)]
Rating = Annotated[int, Field(ge=1, le=5)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProductIn(_Body):
    sku: Sku
    name: Name
    brand: Label | None = None
    category: Label | None = None


class ProductOut(BaseModel):
    id: int
    sku: str
    name: str
    brand: str | None
    category: str | None
    created_at: datetime
    updated_at: datetime


class ReviewIn(_Body):
    product_sku: Sku
    rating: Rating
    title: Title | None = None
    body: Body
    author_name: Title | None = None
    author_email: Email | None = None
    locale: Locale | None = None
    source: Source = "app"
    external_id: ExternalId | None = None


class ReviewOut(BaseModel):
    id: UUID
    product_sku: str
    rating: int
    title: str | None
    body: str
    author_name: str | None
    author_email: str | None
    locale: str | None
    source: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


class ReviewPatch(_Body):
    """Edits title, body and/or rating. `title: null` clears it; body and rating can't be null."""

    title: Title | None = None
    body: Body | None = None
    rating: Rating | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ReviewPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, body, rating")
        for name in ("body", "rating"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ReviewBatchIn(_Body):
    reviews: list[ReviewIn] = Field(min_length=1, max_length=MAX_BATCH_REVIEWS)


class ReviewBatchOut(BaseModel):
    inserted: int
    ids: list[UUID]


class TickIn(_Body):
    symbol: Symbol
    asset_class: AssetClass
    price: Price
    size: Size
    event_time: AwareDatetime  # pydantic-core's check; PostgreSQL stores it as timestamptz
    venue: Venue | None = None


class TickBatchIn(_Body):
    ticks: list[TickIn] = Field(min_length=1, max_length=MAX_BATCH_TICKS)


class TickBatchOut(BaseModel):
    inserted: int


class Problem(BaseModel):
    """Every error body: `detail` is a message or, for validation errors, a list of errors."""

    detail: str | list[dict[str, Any]]
