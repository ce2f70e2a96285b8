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


def candle_at(when: str, **changes: object) -> bytes:
    return orjson.dumps({**GOOD, "event_time": when, **changes})


def test_a_poll_read_together_gives_each_batch_what_reading_it_alone_gives() -> None:
    batches = [
        [candle_at("2026-11-22T10:59:59Z", trade_count=i) for i in range(5)],
        [candle_at(f"2026-11-22T1{h}:00:00+01:00") for h in (1, 2, 1, 3)],  # three hours
        [candle_at("1969-12-31T23:59:59.999999Z"), candle_at("1969-12-31T22:00:00Z")],
        [candle_at("2026-11-22T12:30:00Z")],
    ]
    together = validator().parse_many(batches)
    for values, parsed in zip(batches, together, strict=True):
        alone = validator().parse(values)
        assert parsed is not None and alone is not None
        assert parsed.table.equals(alone.table)
        assert parsed.hours.to_pylist() == alone.hours.to_pylist()
        assert parsed.one_hour == alone.one_hour
        assert [hour_path(h) for h in parsed.hours.to_pylist()] == [
            partition_path(CandleClosed.model_validate_json(v).event_time) for v in values
        ]
    assert [p.one_hour is not None for p in together if p is not None] == [True, False, False, True]


def test_a_bad_record_sends_only_its_own_batch_record_by_record() -> None:
    good = [candle_at("2026-11-22T10:00:00Z")] * 3
    bad = [candle_at("2026-11-22T10:00:00Z"), candle_at("2026-11-22T10:00:00+02")]
    parsed = validator().parse_many([good, bad, good])
    assert parsed[1] is None
    assert parsed[0] is not None and parsed[2] is not None
    assert parsed[0].table.num_rows == parsed[2].table.num_rows == 3


def test_minor_batches_of_a_poll_do_not_pin_the_whole_polls_memory() -> None:
    big = [candle_at("2026-11-22T10:00:00Z", trade_count=i) for i in range(3000)]
    small = [candle_at("2026-11-22T10:00:00Z")] * 10
    whole = validator().parse(big + small)
    parsed = validator().parse_many([big, small])
    assert whole is not None and parsed[1] is not None
    # A slice would report the whole poll's buffers; its own copy holds just its rows.
    assert parsed[1].table.get_total_buffer_size() * 100 < whole.table.get_total_buffer_size()
