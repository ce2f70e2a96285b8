"""Request validation (pure): strict types, limits, unknown fields, unsafe text, money, time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from ingest.schemas import (
    MAX_BATCH_REVIEWS,
    MAX_BATCH_TICKS,
    ReviewBatchIn,
    ReviewIn,
    ReviewPatch,
    TickBatchIn,
    TickIn,
)
from pydantic import ValidationError

REVIEW = {"product_sku": "KTL-100", "rating": 2, "body": "Leaks"}
TICK = {
    "symbol": "BTC-USD",
    "asset_class": "crypto",
    "price": "67012.50",
    "size": "0.25",
    "event_time": "2026-11-22T17:00:00.123+01:00",
}


def _json(doc: object) -> bytes:
    return orjson.dumps(doc)


def test_valid_review_gets_defaults() -> None:
    review = ReviewIn.model_validate_json(_json(REVIEW))
    assert review.source == "app" and review.title is None


@pytest.mark.parametrize(
    "change",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": "5"},
        {"rating": 4.0},
        {"rating": True},
        {"body": ""},
        {"body": "x" * 5001},
        {"title": "x" * 201},
        {"product_sku": "has space"},
        {"author_email": "not-an-email"},
        {"locale": "english!"},
        {"id": "x"},
        {"created_at": "2026-01-01T00:00:00Z"},
        {"is_admin": True},
        {"body": "nul\x00byte"},
    ],
)
def test_review_rejects(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ReviewIn.model_validate_json(_json({**REVIEW, **change}))


def test_lone_surrogate_is_rejected_from_json_and_python() -> None:
    with pytest.raises(ValidationError):
        ReviewIn.model_validate_json(b'{"product_sku":"A","rating":1,"body":"a\\ud800"}')
    with pytest.raises(ValidationError):
        ReviewIn.model_validate({**REVIEW, "body": "a\ud800"})


def test_tick_price_is_exact_and_time_is_utc() -> None:
    tick = TickIn.model_validate_json(_json({**TICK, "price": "0.000000000000000001"}))
    assert tick.price == Decimal("0.000000000000000001")
    assert tick.event_time == datetime(2026, 11, 22, 16, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    "change",
    [
        {"price": "NaN"},
        {"price": "Infinity"},
        {"price": "-Infinity"},
        {"price": "0"},
        {"price": "-0.01"},
        {"price": 1.5},
        {"price": "1e400"},
        {"size": "-1"},
        {"event_time": "2026-11-22T17:00:00"},
        {"asset_class": "bond"},
        {"symbol": ""},
        {"venue": "v" * 65},
    ],
)
def test_tick_rejects(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TickIn.model_validate_json(_json({**TICK, **change}))


def test_non_finite_json_literals_are_rejected() -> None:
    raw = _json({**TICK, "price": 0}).replace(b'"price":0', b'"price":NaN')
    with pytest.raises(ValidationError):
        TickIn.model_validate_json(raw)


def test_batch_limits() -> None:
    ReviewBatchIn.model_validate_json(_json({"reviews": [REVIEW] * MAX_BATCH_REVIEWS}))
    with pytest.raises(ValidationError):
        ReviewBatchIn.model_validate_json(_json({"reviews": [REVIEW] * (MAX_BATCH_REVIEWS + 1)}))
    with pytest.raises(ValidationError):
        TickBatchIn.model_validate_json(_json({"ticks": [TICK] * (MAX_BATCH_TICKS + 1)}))
    with pytest.raises(ValidationError):
        TickBatchIn.model_validate_json(_json({"ticks": []}))


def test_patch_needs_a_field_and_cannot_null_body_or_rating() -> None:
    assert ReviewPatch.model_validate_json(b'{"title": null}').model_fields_set == {"title"}
    for bad in (b"{}", b'{"body": null}', b'{"rating": null}', b'{"product_sku": "X"}'):
        with pytest.raises(ValidationError):
            ReviewPatch.model_validate_json(bad)
