from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from contracts import datasets, topics
from contracts.events import AlertRaised, CandleClosed, QuotePolled, ReviewEnriched
from pydantic import ValidationError
from servicekit.kafka import decode_event, encode_event

NOW = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def quote(**overrides: object) -> QuotePolled:
    fields: dict[str, object] = {
        "symbol": "BTC-USD",
        "asset_class": "crypto",
        "price": "67012.50",
        "size": "0.25",
        "event_time": "2026-11-22T17:00:00.123Z",
        "source": "demo",
        "polled_at": NOW,
    }
    fields.update(overrides)
    return QuotePolled.model_validate(fields)


def test_decimals_round_trip_exactly_as_strings() -> None:
    event = quote(price="0.000000000000000001")
    wire = encode_event(event)
    assert b'"price":"0.000000000000000001"' in wire
    assert decode_event(QuotePolled, wire).price == Decimal("0.000000000000000001")


@pytest.mark.parametrize("bad", [1.5, "NaN", "Infinity", "-inf", "abc", True])
def test_float_and_non_finite_decimals_are_rejected(bad: object) -> None:
    with pytest.raises(ValidationError):
        quote(price=bad)


def test_decimal_beyond_archive_precision_is_rejected() -> None:
    with pytest.raises(ValidationError, match="integer digits"):
        quote(price="1" + "0" * 20)
    with pytest.raises(ValidationError, match="fractional digits"):
        quote(price="0." + "1" * 19)


def test_naive_timestamp_is_rejected_and_offsets_become_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        quote(event_time="2026-11-22T17:00:00")
    assert quote(event_time="2026-11-22T19:00:00+02:00").event_time == NOW


def test_topic_names_are_unique_and_every_dataset_reads_a_known_topic() -> None:
    names = [spec.name for spec in topics.ALL]
    assert len(names) == len(set(names))
    for dataset in datasets.ALL:
        assert dataset.topic.name in topics.BY_NAME
        assert dataset.event_time_field in dataset.model.model_fields


def test_candle_serializes_every_money_field_as_string() -> None:
    candle = CandleClosed(
        symbol="ACME",
        asset_class="equity",
        window_start=NOW,
        window_end=NOW,
        open="1.10",
        high="1.20",
        low="1.00",
        close="1.15",
        volume="300",
        vwap="1.1234",
        trade_count=3,
        sma=None,
        sma_period=5,
        ema="1.12",
        ema_period=5,
        event_time=NOW,
        emitted_at=NOW,
    )
    dumped = candle.model_dump(mode="json")
    for field in ("open", "high", "low", "close", "volume", "vwap", "ema"):
        assert isinstance(dumped[field], str), field


def test_encode_event_writes_the_json_of_the_models_json_dump() -> None:
    """The wire form is the serializer's direct output; it must stay the JSON of
    `model_dump(mode="json")`, byte for byte (decimals as strings, UTC times, enums, unicode,
    floats, nested dicts, nulls), or replays and consumers would see other records."""
    events = [
        quote(price="0.000000000000000001", size="123456789.5"),
        ReviewEnriched(
            review_id="00000000-0000-0000-0000-000000000001",
            op="upsert",
            source="app",
            dedup_key="d" * 32,
            product_id=7,
            product_known=True,
            rating=2,
            title="Déçu \u2014 «bof»",
            body='Zu laut 😞 [EMAIL] "quoted" \\ and\nnew line',
            pii_counts={"email": 1, "phone": 2},
            sentiment_score=-0.4215,
            sentiment_label="negative",
            event_time="2026-11-22T19:00:00.5+02:00",
            enriched_at=NOW,
        ),
        AlertRaised(
            alert_id="a1",
            kind="negative_review",
            subject="SKU-1",
            severity="warning",
            message="2★: bof",
            event_time=NOW,
            details={"rating": "2"},
            raised_at=NOW,
        ),
    ]
    for event in events:
        assert encode_event(event) == orjson.dumps(event.model_dump(mode="json"))
