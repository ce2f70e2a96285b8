"""`POST /v1/ticks/batch` bodies (pure): validate up to 10,000 ticks and render them as
PostgreSQL COPY text, so PostgreSQL parses the exact decimals and timestamps itself.

Two paths, one set of rules:

- the fast path takes orjson's parse and checks each tick against a *narrower* grammar than
  the schema (plain decimal strings, `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)` timestamps, no
  extra keys). A tick it accepts goes to COPY as the very strings the client sent; no Python
  Decimal or datetime is built per row except one `fromisoformat` for the range check.
- anything it does not accept, for whatever reason, goes through the full pydantic model
  (`schemas.TickBatchIn`), which remains the only judge of what is valid and the author of
  every 422. Valid-but-unusual input (a JSON integer price, `1E+2`, a `+0100` offset) is
  rendered from the model's Decimal/datetime instead.

So the fast path may only ever accept a subset of what the model accepts, with the same
meaning; `tests/unit/ingest/test_tick_batch.py` checks that on generated input.

On top of the schema, event times must lie between 1970-01-01 and one day after now (a
fuzzer's year-134 tick is a 422, not a row).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from ingest.problems import InvalidBodyError
from ingest.schemas import MAX_BATCH_TICKS, TickBatchIn

EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)

COPY_COLUMNS = ("symbol", "asset_class", "price", "size", "event_time", "venue", "ingested_at")
# With tracing on, every row of a batch names the request's traceparent.
TRACED_COPY_COLUMNS = (*COPY_COLUMNS, "trace_parent")

_REQUIRED = frozenset({"symbol", "asset_class", "price", "size", "event_time"})
_ALLOWED = _REQUIRED | {"venue"}
# Each narrower than (or equal to) the schema's rule for the same field.
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/^=-]{0,31}")
_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,18})?")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_ASSET_CLASSES = frozenset({"equity", "crypto"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")

Row = tuple[str, str, str, str, str, str | None]
"""symbol, asset_class, price, size, event_time, venue — as PostgreSQL input text."""


@dataclass(frozen=True, slots=True)
class TickBatch:
    rows: list[Row]
    # orjson's parse of the body when the fast path took it (saves a parse when
    # fingerprinting); None when the model did.
    document: Any | None


def parse_tick_batch(body: bytes, *, now: datetime) -> TickBatch:
    """The batch's rows, or InvalidBodyError (422) with pydantic-style errors."""
    rows = _fast_rows(body, now=now)
    if rows is not None:
        return rows
    try:
        batch = TickBatchIn.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidBodyError([dict(e) for e in errors]) from exc
    latest = now + MAX_FUTURE
    out_of_range = [
        {
            "type": "value_error",
            "loc": ("ticks", i, "event_time"),
            "msg": f"event_time must lie between {EARLIEST_EVENT_TIME.isoformat()} and one "
            "day after now",
        }
        for i, t in enumerate(batch.ticks)
        if not EARLIEST_EVENT_TIME <= t.event_time <= latest
    ]
    if out_of_range:
        raise InvalidBodyError(out_of_range)
    return TickBatch(
        rows=[
            (
                t.symbol,
                t.asset_class.value,
                format(t.price, "f"),
                format(t.size, "f"),
                t.event_time.isoformat(),
                t.venue,
            )
            for t in batch.ticks
        ],
        document=None,
    )


def _fast_rows(body: bytes, *, now: datetime) -> TickBatch | None:
    """The rows if every tick fits the narrow grammar and the time range, else None."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict or len(document) != 1:
        return None
    ticks = document.get("ticks")
    if type(ticks) is not list or not 1 <= len(ticks) <= MAX_BATCH_TICKS:
        return None
    earliest, latest = EARLIEST_EVENT_TIME, now + MAX_FUTURE
    symbol_ok, decimal_ok, time_ok = _SYMBOL.fullmatch, _DECIMAL.fullmatch, _TIMESTAMP.fullmatch
    parse_time = datetime.fromisoformat
    rows: list[Row] = []
    append = rows.append
    for tick in ticks:
        if type(tick) is not dict:
            return None
        keys = tick.keys()
        if not (keys >= _REQUIRED and keys <= _ALLOWED):
            return None
        symbol, asset_class = tick["symbol"], tick["asset_class"]
        price, size, event_time = tick["price"], tick["size"], tick["event_time"]
        venue = tick.get("venue")
        if not (
            type(symbol) is str
            and symbol_ok(symbol)
            and type(asset_class) is str
            and asset_class in _ASSET_CLASSES
            and type(price) is str
            and decimal_ok(price)
            and price.strip("0.")  # digits and one dot: empty means zero, not > 0
            and type(size) is str
            and decimal_ok(size)
            and type(event_time) is str
            and time_ok(event_time)
            and (venue is None or (type(venue) is str and _venue_ok(venue)))
        ):
            return None
        try:
            moment = parse_time(event_time)
        except ValueError:  # e.g. month 13, offset +24:00
            return None
        if not earliest <= moment <= latest:
            return None
        append((symbol, asset_class, price, size, event_time, venue))
    return TickBatch(rows=rows, document=document)


def _venue_ok(venue: str) -> bool:
    # schemas.Venue: 1-64 characters, no NUL. orjson already refused lone surrogates.
    return 1 <= len(venue) <= 64 and "\x00" not in venue


def copy_text(
    rows: Sequence[Row], *, ingested_at: datetime, trace_parent: str | None = None
) -> bytes:
    """PostgreSQL COPY text format (tab-separated, `\\N` for NULL) for COPY_COLUMNS, or for
    TRACED_COPY_COLUMNS when a traceparent is given (a W3C traceparent needs no escaping)."""
    stamp = ingested_at.isoformat()
    if trace_parent is not None:
        stamp = f"{stamp}\t{trace_parent}"
    lines = [
        f"{symbol}\t{asset_class}\t{price}\t{size}\t{event_time}\t{_copy_field(venue)}\t{stamp}\n"
        for symbol, asset_class, price, size, event_time, venue in rows
    ]
    return "".join(lines).encode()


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    if _COPY_SPECIAL.search(value):
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value
