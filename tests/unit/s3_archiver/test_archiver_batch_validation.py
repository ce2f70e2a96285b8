"""The Arrow batch validator accepts a batch only when pydantic accepts every record in it."""

from datetime import UTC, datetime

import orjson
import pytest
from contracts.events import AlertRaised, CandleClosed, ReviewEnriched
from pydantic import ValidationError
from s3_archiver.batch_validation import BatchValidator
from s3_archiver.object_keys import hour_path, partition_path
from s3_archiver.parquet_schema import schema_for

WHEN = datetime(2026, 11, 22, 17, 30, tzinfo=UTC)
GOOD = CandleClosed.model_validate(
    {
        "symbol": "BTC-USD",
        "asset_class": "crypto",
        "window_start": WHEN,
        "window_end": WHEN,
        "open": "1.5",
        "high": "99999999999999999999.999999999999999999",
        "low": "0.1",
        "close": "-2",
        "volume": "0",
        "vwap": "1",
        "trade_count": 3,
        "sma_period": 20,
        "ema": None,
        "ema_period": 12,
        "event_time": WHEN,
        "emitted_at": WHEN,
    }
).model_dump(mode="json")


def validator() -> BatchValidator:
    v = BatchValidator.for_model(CandleClosed, schema_for(CandleClosed), "event_time")
    assert v is not None
    return v


def pydantic_accepts(value: bytes) -> bool:
    try:
        CandleClosed.model_validate_json(value)
    except ValidationError:
        return False
    return True


VARIANTS = {
    "good": {},
    "utc offset": {"event_time": "2026-11-22T19:30:00+02:00"},
    "extra field": {"exchange": "demo"},
    "decimal as float": {"open": 1.5},
    "decimal as int": {"open": 2},
    "too many fractional digits": {"low": "0.0000000000000000001"},
    "too many integer digits": {"high": "100000000000000000000"},
    "naive time": {"event_time": "2026-11-22T17:30:00"},
    "offset without minutes": {"event_time": "2026-11-22T19:30:00+02"},
    "offset without colon": {"emitted_at": "2026-11-22T19:30:00+0200"},
    "negative offset": {"window_start": "2026-11-22T12:30:00-05:00"},
    "zulu": {"window_end": "2026-11-22T17:30:00Z"},
    "unknown enum": {"asset_class": "bond"},
    "int as string": {"trade_count": "3"},
    "missing required": {"symbol": None},
    "null optional": {"sma": None},
    "padded decimal": {"open": " 1.5"},
}


@pytest.mark.parametrize("name", VARIANTS)
def test_a_batch_passes_only_if_pydantic_accepts_every_record(name: str) -> None:
    record = {**GOOD, **VARIANTS[name]}
    if record.get("symbol") is None:
        record.pop("symbol")
    value = orjson.dumps(record)
    hours = validator().event_hours([orjson.dumps(GOOD), value])
    if name in {"good", "utc offset", "extra field", "null optional", "negative offset", "zulu"}:
        assert hours is not None, f"{name}: valid batch should take the fast path"
    if hours is not None:
        assert pydantic_accepts(value), f"{name}: Arrow accepted what the model rejects"
        event = CandleClosed.model_validate_json(value)
        assert hour_path(hours[1]) == partition_path(event.event_time)


def test_event_hours_match_the_models_partition_paths() -> None:
    values = [
        orjson.dumps({**GOOD, "event_time": f"2026-11-2{d}T0{h}:59:59.999999Z"})
        for d in range(1, 4)
        for h in range(0, 9, 4)
    ]
    hours = validator().event_hours(values)
    assert hours is not None
    assert [hour_path(h) for h in hours] == [
        partition_path(CandleClosed.model_validate_json(v).event_time) for v in values
    ]


def test_models_with_constraints_or_maps_are_validated_record_by_record() -> None:
    assert (
        BatchValidator.for_model(ReviewEnriched, schema_for(ReviewEnriched), "event_time") is None
    )
    assert BatchValidator.for_model(AlertRaised, schema_for(AlertRaised), "event_time") is None


def test_empty_or_multiline_values_fall_back() -> None:
    assert validator().event_hours([b""]) is None
    assert validator().event_hours([orjson.dumps(GOOD, option=orjson.OPT_INDENT_2)]) is None
