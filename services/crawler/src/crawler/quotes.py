"""Quote feed bodies to `QuotePolled` events (pure), with exact decimals.

JSON numbers are parsed with `parse_float=Decimal` (and ints become Decimals), so `67012.10`
never passes through a binary float. A quote that cannot be read is skipped and counted; one
bad item does not drop the rest of the feed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from contracts.events import QuotePolled
from contracts.identity import quote_event_id
from pydantic import ValidationError

from crawler.settings import QuoteFeedConfig

log = logging.getLogger(__name__)


class FeedError(ValueError):
    """The feed body as a whole is unusable (not JSON, no list where one was configured)."""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    quotes: list[QuotePolled]
    rejected: list[str]  # why each skipped item was skipped


def load_exact_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except ValueError as exc:
        raise FeedError(f"feed is not JSON: {exc}") from exc


def _path(document: Any, dotted: str) -> Any:
    value = document
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _time(value: Any, fmt: str) -> datetime:
    if value is None:
        raise ValueError("no time")
    if fmt == "iso":
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError(f"naive timestamp {value!r}")
        return parsed.astimezone(UTC)
    seconds = Decimal(str(value)) / (1000 if fmt == "epoch_ms" else 1)
    return datetime.fromtimestamp(float(seconds), tz=UTC)


def parse_feed(body: bytes, feed: QuoteFeedConfig, *, polled_at: datetime) -> ParsedFeed:
    document = load_exact_json(body)
    items = _path(document, feed.items_path) if feed.items_path else document
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise FeedError(f"{feed.name}: {feed.items_path or 'body'} is not a list or object")
    quotes: list[QuotePolled] = []
    rejected: list[str] = []
    for index, item in enumerate(items):
        try:
            symbol = feed.symbol or _path(item, feed.fields.symbol)
            size = _path(item, feed.fields.size)
            symbol_text = str(symbol) if symbol is not None else ""
            event_time = _time(_path(item, feed.fields.time), feed.time_format)
            quotes.append(
                QuotePolled(
                    symbol=symbol_text,
                    asset_class=(
                        _path(item, feed.fields.asset_class) if feed.fields.asset_class else None
                    )
                    or feed.asset_class,
                    price=_as_decimal(_path(item, feed.fields.price)),
                    size=_as_decimal(size) if size is not None else Decimal(0),
                    event_time=event_time,
                    source=feed.name,
                    polled_at=polled_at,
                    event_id=quote_event_id(feed.name, symbol_text, event_time),
                )
            )
            if not quotes[-1].symbol:
                quotes.pop()
                rejected.append(f"item {index}: no symbol")
        except (ValidationError, ValueError, ArithmeticError) as exc:
            rejected.append(f"item {index}: {exc}")
    return ParsedFeed(quotes=quotes, rejected=rejected)


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        return Decimal(value.strip())
    raise ValueError(f"not a decimal: {value!r}")
