"""Exact ratings in the review contracts: decimal strings on the wire, the source scale beside
them, and records written before these fields still decoding."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from contracts.events import ReviewCrawled, ReviewEnriched
from pydantic import ValidationError
from servicekit.kafka import decode_event, encode_event

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

CRAWLED: dict[str, Any] = {
    "source": "shopx",
    "external_id": "r-1",
    "url": "https://shopx.example/r/1",
    "rating": 1.72,
    "body": "Cracked in a week.",
    "crawled_at": "2026-11-30T12:00:00Z",
}
ENRICHED: dict[str, Any] = {
    "review_id": "crawl:shopx:r-1",
    "op": "upsert",
    "source": "crawl:shopx",
    "dedup_key": "k",
    "rating": 2,
    "body": "Cracked in a week.",
    "event_time": "2026-11-30T12:00:00Z",
    "enriched_at": "2026-11-30T12:00:01Z",
}
SCALE = {
    "rating_exact": "1.72",
    "rating_source_value": "1.8",
    "rating_source_worst": "0",
    "rating_source_best": "10",
}


@pytest.mark.parametrize(("model", "base"), [(ReviewCrawled, CRAWLED), (ReviewEnriched, ENRICHED)])
def test_exact_rating_and_scale_round_trip_as_decimal_strings(
    model: type[ReviewCrawled] | type[ReviewEnriched], base: dict[str, Any]
) -> None:
    event = model.model_validate({**base, **SCALE})
    wire = encode_event(event)
    document = orjson.loads(wire)
    assert {k: document[k] for k in SCALE} == SCALE
    back = decode_event(model, wire)
    assert back == event
    assert back.rating_exact == Decimal("1.72")
    assert (back.rating_source_worst, back.rating_source_best) == (Decimal(0), Decimal(10))


@pytest.mark.parametrize(("model", "base"), [(ReviewCrawled, CRAWLED), (ReviewEnriched, ENRICHED)])
def test_records_from_before_the_exact_fields_decode(
    model: type[ReviewCrawled] | type[ReviewEnriched], base: dict[str, Any]
) -> None:
    event = decode_event(model, orjson.dumps(base))
    assert event.rating_exact is None and event.rating_source_value is None
    assert event.rating_source_worst is None and event.rating_source_best is None


@pytest.mark.parametrize("bad", [1.72, "0.99", "5.01", "NaN", True])
def test_exact_rating_is_a_string_within_one_to_five(bad: object) -> None:
    with pytest.raises(ValidationError):
        ReviewEnriched.model_validate({**ENRICHED, "rating_exact": bad})
