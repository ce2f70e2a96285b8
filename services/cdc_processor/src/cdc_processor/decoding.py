"""Raw Kafka bytes → typed inputs for the pure cores. No I/O.

Every decoder returns None for a record that carries nothing to do (a tombstone, a truncate)
and raises `DecodeError` with a machine-readable reason for bytes that must be dead-lettered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Generic, Literal, TypeVar

import orjson
from contracts.debezium import ChangeEvent, EnvelopeError, Op, Source, decode_change_event
from contracts.events import QuotePolled, ReviewCrawled, TradeExecuted, TradeSide
from contracts.rows import AssetClass, MarketTickRow, ProductRow, ReviewRow
from contracts.types import (
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    RATING_BEST,
    RATING_FRACTION_DIGITS,
    RATING_WORST,
)
from pydantic import BaseModel, ConfigDict, ValidationError

RowT = TypeVar("RowT", ProductRow, ReviewRow, MarketTickRow)

MAX_VALUE_BYTES = 1_000_000  # larger values are dead-lettered as `oversized`, never parsed


# Crawled reviews get ids `crawl:<site>:<external_id>`; app reviews keep their UUID.
CRAWL_ID_PREFIX = "crawl:"

_APP_WORST = Decimal(RATING_WORST)
_APP_BEST = Decimal(RATING_BEST)
_RATING_QUANTUM = Decimal(1).scaleb(-RATING_FRACTION_DIGITS)


class DecodeError(ValueError):
    """Bytes Pulse cannot use; `reason` is the DLQ reason (undecodable, schema_invalid…)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ProductChange:
    product: ProductRow
    deleted: bool


@dataclass(frozen=True, slots=True)
class ReviewInput:
    """A review from either source, before enrichment."""

    review_id: str
    source: str  # "app" or "crawl:<site>"
    deleted: bool
    product_id: int | None
    product_sku: str | None
    rating: Decimal | None  # exact, on 1–5
    title: str | None
    body: str
    author_name: str | None
    author_email: str | None
    locale: str | None
    event_time: datetime
    source_lsn: int | None = None
    # What the source stated, on its own scale; None when unknown (old crawled records).
    rating_source_value: Decimal | None = None
    rating_source_worst: Decimal | None = None
    rating_source_best: Decimal | None = None
    # The W3C traceparent the row carried (contracts.rows); tracing only, never emitted.
    trace_parent: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """A trade or quote, normalized; `tick_id` identifies it across redeliveries."""

    tick_id: str
    symbol: str
    asset_class: AssetClass
    price: Decimal
    size: Decimal
    event_time: datetime
    trace_parent: str | None = None  # as ReviewInput's: CDC ticks only, tracing only


def _change(value: bytes | None) -> ChangeEvent | None:
    try:
        change = decode_change_event(_sized(value))
    except EnvelopeError as exc:
        raise DecodeError(exc.reason, exc.detail) from exc
    if change is None or change.op in (Op.TRUNCATE, Op.MESSAGE):
        return None
    return change


def _row(change: ChangeEvent, model: type[RowT]) -> RowT:
    try:
        return change.row(model)
    except EnvelopeError as exc:
        raise DecodeError(exc.reason, exc.detail) from exc


def decode_product(value: bytes | None) -> ProductChange | None:
    change = _change(value)
    if change is None:
        return None
    return ProductChange(_row(change, ProductRow), deleted=change.op is Op.DELETE)


class _Upsert(BaseModel, Generic[RowT]):
    """The common envelope (insert, update or snapshot, schemas off) with its row typed, so
    the bytes are validated in one pass; anything else takes the general path. Reviews and
    ticks take it (the general path was ~11 % of the worker at 1,000 ticks/s in py-spy)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    op: Literal["c", "u", "r"]
    after: RowT
    source: Source


_REVIEW_UPSERT = _Upsert[ReviewRow]
_TICK_UPSERT = _Upsert[MarketTickRow]


def _upsert(envelope: type[_Upsert[RowT]], value: bytes | None) -> _Upsert[RowT] | None:
    if not value or len(value) > MAX_VALUE_BYTES:
        return None
    try:
        return envelope.model_validate_json(value)
    except ValidationError:
        return None  # the general path decodes it or says precisely what is wrong


def decode_review_cdc(value: bytes | None) -> ReviewInput | None:
    upsert = _upsert(_REVIEW_UPSERT, value)
    if upsert is not None:
        return _review_input(upsert.after, lsn=upsert.source.lsn)
    change = _change(value)
    if change is None:
        return None
    deleted = change.op is Op.DELETE
    if deleted:
        # With REPLICA IDENTITY DEFAULT the before image holds the key only: keep the id.
        image = change.before or {}
        if "id" not in image:
            raise DecodeError("schema_invalid", "delete without the review id")
        return ReviewInput(
            review_id=str(image["id"]),
            source="app",
            deleted=True,
            product_id=_int_or_none(image.get("product_id")),
            product_sku=None,
            rating=None,
            title=None,
            body="",
            author_name=None,
            author_email=None,
            locale=None,
            event_time=change.source_time,
            source_lsn=change.source.lsn,
        )
    return _review_input(_row(change, ReviewRow), lsn=change.source.lsn)


def _review_input(row: ReviewRow, *, lsn: int | None) -> ReviewInput:
    stars = Decimal(row.rating)  # the app's whole stars are already on 1–5: exact as they are
    return ReviewInput(
        review_id=str(row.id),
        source=row.source,
        deleted=False,
        product_id=row.product_id,
        product_sku=None,
        rating=stars,
        rating_source_value=stars,
        rating_source_worst=_APP_WORST,
        rating_source_best=_APP_BEST,
        title=row.title,
        body=row.body,
        author_name=row.author_name,
        author_email=row.author_email,
        locale=row.locale,
        event_time=row.updated_at,
        source_lsn=lsn,
        trace_parent=row.trace_parent,
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sized(value: bytes | None) -> bytes | None:
    """The value, None for a tombstone; DecodeError when it is over the size limit."""
    if value is None or value == b"":
        return None
    if len(value) > MAX_VALUE_BYTES:
        raise DecodeError("oversized", f"{len(value)} bytes > {MAX_VALUE_BYTES}")
    return value


def _json(value: bytes | None) -> object:
    value = _sized(value)
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("undecodable", f"not JSON: {exc}") from exc


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first.get('msg', 'invalid')} ({exc.error_count()} error(s))"


def decode_review_crawled(value: bytes | None) -> ReviewInput | None:
    document = _json(value)
    if document is None:
        return None
    try:
        crawled = ReviewCrawled.model_validate(document)
    except ValidationError as exc:
        raise DecodeError("schema_invalid", _short(exc)) from exc
    return ReviewInput(
        review_id=f"{CRAWL_ID_PREFIX}{crawled.source}:{crawled.external_id}",
        source=f"crawl:{crawled.source}",
        deleted=False,
        product_id=None,
        product_sku=crawled.product_sku,
        rating=_crawled_rating(crawled),
        rating_source_value=crawled.rating_source_value,
        rating_source_worst=crawled.rating_source_worst,
        rating_source_best=crawled.rating_source_best,
        title=crawled.title,
        body=crawled.body,
        author_name=crawled.author_name,
        author_email=None,
        locale=crawled.language,
        event_time=crawled.published_at or crawled.crawled_at,
    )


def _crawled_rating(crawled: ReviewCrawled) -> Decimal | None:
    """The exact rating; a record from before `rating_exact` has only its float (the crawler
    rounded it to 3 places, so its shortest repr is the value it meant)."""
    if crawled.rating_exact is not None:
        return crawled.rating_exact
    if crawled.rating is None:
        return None
    return Decimal(repr(crawled.rating)).quantize(_RATING_QUANTUM, ROUND_HALF_EVEN).normalize()


def decode_tick_cdc(value: bytes | None) -> Tick | None:
    upsert = _upsert(_TICK_UPSERT, value)
    if upsert is not None:
        return _tick(upsert.after)
    change = _change(value)
    if change is None or change.op is Op.DELETE:
        return None  # a deleted tick does not un-trade: candles keep it
    return _tick(_row(change, MarketTickRow))


def _tick(row: MarketTickRow) -> Tick:
    return Tick(
        tick_id=f"db:{row.id}",
        symbol=row.symbol,
        asset_class=row.asset_class,
        price=row.price,
        size=row.size,
        event_time=row.event_time,
        trace_parent=row.trace_parent,
    )


EventT = TypeVar("EventT", bound=QuotePolled)


def _event(model: type[EventT], value: bytes) -> EventT:
    """One pass from bytes (pydantic's parser): no intermediate dict per record."""
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise DecodeError("undecodable", f"not JSON: {_short(exc)}") from exc
        raise DecodeError("schema_invalid", _short(exc)) from exc


def decode_quote(value: bytes | None) -> Tick | None:
    value = _sized(value)
    if value is None:
        return None
    quote = _event(QuotePolled, value)
    return Tick(
        tick_id=f"quote:{quote.source}:{quote.symbol}:{quote.event_time.isoformat()}",
        symbol=quote.symbol,
        asset_class=quote.asset_class,
        price=quote.price,
        size=quote.size,
        event_time=quote.event_time,
    )


def decode_trade(value: bytes | None) -> Tick | None:
    """An exchange trade from market_feeds; its `event_id` (venue, symbol, exchange trade id)
    is the tick id, so a trade published twice across a feed reconnect counts once.

    Validated as `TradeExecuted` validates it, without building the model for the records
    market_feeds writes (at 5,000 trades/s pydantic's model was ~11 % of the worker's CPU):
    orjson, then `_lean_trade`'s checks; a record they do not take whole goes through
    `TradeExecuted`, so what the contract refuses is dead-lettered with pydantic's reason."""
    value = _sized(value)
    if value is None:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("undecodable", f"not JSON: {exc}") from exc
    tick = _lean_trade(document)
    if tick is not None:
        return tick
    try:
        trade = TradeExecuted.model_validate(document)
    except ValidationError as exc:
        raise DecodeError("schema_invalid", _short(exc)) from exc
    return Tick(
        tick_id=trade.event_id,
        symbol=trade.symbol,
        asset_class=trade.asset_class,
        price=trade.price,
        size=trade.size,
        event_time=trade.event_time,
    )


_TRADE_TEXT_FIELDS = ("event_id", "venue", "symbol", "venue_symbol", "trade_id")
_ASSET_CLASSES = {member.value: member for member in AssetClass}
_TRADE_SIDES = frozenset(member.value for member in TradeSide)
# RFC 3339 with an offset, as market_feeds writes it (orjson: `+00:00`); whatever else
# pydantic takes as a datetime goes to pydantic.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII)
# A plain decimal that always fits DECIMAL(38,18) (`ExactDecimal`: at most 20 integer and 18
# fractional digits, finite): one match instead of the contract's parse and digit count.
_PLAIN_DECIMAL = re.compile(
    rf"-?\d{{1,{DECIMAL_PRECISION - DECIMAL_SCALE}}}(?:\.\d{{1,{DECIMAL_SCALE}}})?", re.ASCII
)


def _lean_trade(document: object) -> Tick | None:
    """The trade when `document` is a `TradeExecuted` in the plain form market_feeds writes
    (every field of its JSON type, decimals as strings, RFC 3339 times with an offset), else
    None: the caller then asks the model, which accepts the rest or says what is wrong. So
    this accepts nothing the model refuses, and builds what the model would."""
    if not isinstance(document, dict):
        return None
    get = document.get
    for name in _TRADE_TEXT_FIELDS:
        if type(get(name)) is not str:
            return None
    asset_class = _ASSET_CLASSES.get(get("asset_class"))  # type: ignore[arg-type]  # any JSON
    sequence = get("sequence")
    price, size = get("price"), get("size")
    if (
        asset_class is None
        or get("side") not in _TRADE_SIDES
        or not (sequence is None or type(sequence) is int)
        or type(price) is not str
        or type(size) is not str
        or _PLAIN_DECIMAL.fullmatch(price) is None
        or _PLAIN_DECIMAL.fullmatch(size) is None
    ):
        return None
    event_time = _utc_time(get("event_time"))
    if event_time is None or _utc_time(get("received_at")) is None:
        return None
    return Tick(
        tick_id=document["event_id"],
        symbol=document["symbol"],
        asset_class=asset_class,
        price=Decimal(price),
        size=Decimal(size),
        event_time=event_time,
    )


def _utc_time(value: object) -> datetime | None:
    """An RFC 3339 string with an offset as a UTC datetime (as `UtcDatetime` gives it),
    else None."""
    if type(value) is not str or _RFC3339.fullmatch(value) is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # e.g. month 13: the model says so
        return None
    # `+00:00` and `Z` parse to `UTC` itself, as `UtcDatetime` returns; other offsets are
    # converted by the model.
    return parsed if parsed.tzinfo is UTC else None


Position = tuple[str, int, int]  # (topic, partition, offset) a record was read from


def tick_to_json(tick: Tick, *, source: Position) -> bytes:
    """The repartitioned tick (internal topic keyed by symbol), with where it was read from."""
    return orjson.dumps(
        {
            "src": list(source),
            "tick_id": tick.tick_id,
            "symbol": tick.symbol,
            "asset_class": tick.asset_class.value,
            "price": format(tick.price, "f"),
            "size": format(tick.size, "f"),
            "event_time": tick.event_time.isoformat(),
        }
    )


def tick_from_json(value: bytes | None) -> tuple[Tick, Position] | None:
    document = _json(value)
    if document is None:
        return None
    if not isinstance(document, dict):
        raise DecodeError("schema_invalid", "tick is not an object")
    try:
        topic, partition, offset = document["src"]
        source = (str(topic), int(partition), int(offset))
        return Tick(
            tick_id=str(document["tick_id"]),
            symbol=str(document["symbol"]),
            asset_class=AssetClass(document["asset_class"]),
            price=Decimal(document["price"]),
            size=Decimal(document["size"]),
            event_time=datetime.fromisoformat(document["event_time"]),
        ), source
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise DecodeError("schema_invalid", f"tick: {exc!r}") from exc


# Reviews repartitioned by product (`<app_id>-reviews-by-product`): the source's own bytes,
# framed with their kind and, once known, the product they join, so the partition that takes
# them over decodes them exactly as the source agent did. Frame: `kind \n product \n raw`,
# where product is the product's JSON or empty; kind and product hold no newline.
ReviewKind = Literal["cdc", "crawled"]
_REVIEW_DECODERS = {b"cdc": decode_review_cdc, b"crawled": decode_review_crawled}


def routed_review(kind: ReviewKind, raw: bytes, *, product: bytes = b"") -> bytes:
    """A review for the repartition topic; `product` is its product's JSON when known."""
    return b"%s\n%s\n%s" % (kind.encode(), product, raw)


def with_routed_product(value: bytes, product: bytes) -> bytes:
    """A routed review's frame with `product` (JSON) set, the rest unchanged."""
    kind, _product, raw = value.split(b"\n", 2)
    return b"%s\n%s\n%s" % (kind, product, raw)


def decode_routed_review(value: bytes | None) -> tuple[ReviewInput, bytes] | None:
    """The review a frame holds and its product's JSON (b"" when not known yet); None for
    what the source agent would have skipped. The source agent validated the bytes already,
    so a DecodeError here means a frame written by something else."""
    if not value:
        return None
    parts = value.split(b"\n", 2)
    decode = _REVIEW_DECODERS.get(parts[0])
    if decode is None or len(parts) != 3:
        raise DecodeError("schema_invalid", "not a routed review frame")
    review = decode(parts[2])
    return None if review is None else (review, parts[1])
