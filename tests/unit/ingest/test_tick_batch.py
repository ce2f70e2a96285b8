"""Tick batches: the fast path accepts only what the model accepts, with the same values;
everything else gets the model's verdict; event times are bounded; COPY text is escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest.problems import InvalidBodyError
from ingest.schemas import MAX_BATCH_TICKS, TickBatchIn
from ingest.tick_batch import copy_text, parse_tick_batch
from pydantic import ValidationError

NOW = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
TICK = {
    "symbol": "BTC-USD",
    "asset_class": "crypto",
    "price": "67012.500000000000000001",
    "size": "0.25",
    "event_time": "2026-11-22T17:00:00.123+01:00",
    "venue": "demo",
}


def body(*ticks: dict[str, Any]) -> bytes:
    return orjson.dumps({"ticks": list(ticks)})


def test_plain_ticks_take_the_fast_path_and_keep_the_client_strings() -> None:
    batch = parse_tick_batch(body(TICK, {**TICK, "venue": None}), now=NOW)
    assert batch.document is not None  # parsed once, reused for the fingerprint
    assert batch.rows[0] == (
        "BTC-USD", "crypto", "67012.500000000000000001", "0.25",
        "2026-11-22T17:00:00.123+01:00", "demo",
    )  # fmt: skip
    assert batch.rows[1][5] is None


@pytest.mark.parametrize(
    ("change", "price", "event_time"),
    [
        ({"price": 5}, "5", "2026-11-22T16:00:00.123000+00:00"),
        ({"price": "1E+2"}, "100", "2026-11-22T16:00:00.123000+00:00"),
        ({"event_time": "2026-11-22 17:00:00+0100"}, "67012.500000000000000001",
         "2026-11-22T16:00:00+00:00"),
    ],
)  # fmt: skip
def test_valid_but_unusual_ticks_are_rendered_from_the_model(
    change: dict[str, Any], price: str, event_time: str
) -> None:
    batch = parse_tick_batch(body({**TICK, **change}), now=NOW)
    assert batch.document is None
    assert Decimal(batch.rows[0][2]) == Decimal(price)
    assert datetime.fromisoformat(batch.rows[0][4]) == datetime.fromisoformat(event_time)


@pytest.mark.parametrize(
    "change",
    [
        {"price": "0"},
        {"price": "0.000"},
        {"price": "-1"},
        {"price": "NaN"},
        {"price": "Infinity"},
        {"price": 1.5},
        {"price": "1.0000000000000000001"},  # 19 fractional digits
        {"price": "123456789012345678901"},  # 21 integer digits
        {"size": "-0.1"},
        {"event_time": "2026-11-22T17:00:00"},  # naive
        {"event_time": "2026-13-22T17:00:00Z"},
        {"asset_class": "bond"},
        {"symbol": "has space"},
        {"symbol": "X" * 33},
        {"venue": ""},
        {"venue": "a\x00b"},
        {"id": 1},
        {"is_admin": True},
    ],
)
def test_invalid_ticks_get_the_models_errors(change: dict[str, Any]) -> None:
    raw = body(TICK, {**TICK, **change})
    with pytest.raises(ValidationError) as model_error:
        TickBatchIn.model_validate_json(raw)
    with pytest.raises(InvalidBodyError) as error:
        parse_tick_batch(raw, now=NOW)
    expected = model_error.value.errors(
        include_url=False, include_context=False, include_input=False
    )
    assert error.value.errors == [dict(e) for e in expected]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'{"ticks": []}', b'{"ticks": [], "x": 1}', body(TICK) + b"x",
     body(*[TICK] * (MAX_BATCH_TICKS + 1))],
)  # fmt: skip
def test_bad_documents_are_422(raw: bytes) -> None:
    with pytest.raises(InvalidBodyError):
        parse_tick_batch(raw, now=NOW)


@pytest.mark.parametrize(
    "event_time",
    [
        "0134-05-06T00:00:00Z",  # what a fuzzer once stored
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
        (NOW + timedelta(days=1, seconds=1)).isoformat(),
        "9999-12-31T23:59:59Z",
        "2026-11-23 21:00:01+00:00",  # the model's path (space), same bound
    ],
)
def test_event_time_outside_1970_to_a_day_ahead_is_422(event_time: str) -> None:
    with pytest.raises(InvalidBodyError) as error:
        parse_tick_batch(body(TICK, {**TICK, "event_time": event_time}), now=NOW)
    assert error.value.errors[0]["loc"] == ("ticks", 1, "event_time")


@pytest.mark.parametrize(
    "event_time", ["1970-01-01T00:00:00Z", (NOW + timedelta(days=1)).isoformat()]
)
def test_event_time_bounds_are_inclusive(event_time: str) -> None:
    assert parse_tick_batch(body({**TICK, "event_time": event_time}), now=NOW).rows


def test_copy_text_escapes_and_marks_null() -> None:
    rows = [("A", "equity", "1", "0", "2026-11-22T17:00:00Z", "t\tb\\n\nr\r"),
            ("B", "crypto", "2.5", "1", "2026-11-22T17:00:00Z", None)]  # fmt: skip
    text = copy_text(rows, ingested_at=NOW).decode()
    assert text == (
        "A\tequity\t1\t0\t2026-11-22T17:00:00Z\tt\\tb\\\\n\\nr\\r\t2026-11-22T21:00:00+00:00\n"
        "B\tcrypto\t2.5\t1\t2026-11-22T17:00:00Z\t\\N\t2026-11-22T21:00:00+00:00\n"
    )


# --- generated: the fast path never disagrees with the model --------------------------
_plain = st.from_regex(r"\A[0-9]{1,20}(\.[0-9]{1,18})?\Z")
_positive = st.from_regex(r"\A([1-9][0-9]{0,19}(\.[0-9]{1,18})?|0\.[0-9]{0,17}[1-9])\Z")
_odd_decimals = st.one_of(
    st.from_regex(r"\A[0-9]{1,22}(\.[0-9]{0,20})?\Z"),
    st.sampled_from(["0", "00.0", "-1", "+1", " 1", "1e3", "NaN", "Infinity", ".5", "5."]),
    st.integers(min_value=-5, max_value=10**21),
    st.floats(allow_nan=False, allow_infinity=False),
)
_aware = st.datetimes(
    min_value=datetime(1969, 12, 30), max_value=datetime(2026, 11, 25),
    timezones=st.sampled_from([UTC]) | st.timezones(),
).map(lambda d: d.isoformat())  # fmt: skip
_odd_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1)).map(lambda d: d.isoformat()),  # naive
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|z|[+-][0-9]{2}:?[0-9]{2})?\Z"
    ),
)


def _mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Hypothesis leans to its first/smallest choices: make the odd value the rarer, later one.
    return st.integers(0, 5).flatmap(lambda i: odd if i == 5 else valid)


_ticks = st.fixed_dictionaries(
    {
        "symbol": _mostly(
            st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/^=-]{0,31}\Z"),
            st.from_regex(r"\A[A-Za-z0-9 ._\t^-]{0,34}\Z"),
        ),
        "asset_class": _mostly(st.sampled_from(["crypto", "equity"]), st.just("CRYPTO")),
        "price": _mostly(_positive, _odd_decimals | _plain),
        "size": _mostly(_plain, _odd_decimals),
        "event_time": _mostly(_aware, _odd_times),
    },
    optional={
        "venue": _mostly(st.one_of(st.none(), st.text(min_size=1, max_size=64)), st.text()),
    },
).flatmap(lambda t: _mostly(st.just(t), st.just({**t, "extra": 1})))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=st.lists(_ticks, min_size=1, max_size=2))
def test_fast_path_agrees_with_the_model(ticks: list[dict[str, Any]]) -> None:
    try:
        raw = body(*ticks)
    except TypeError:  # e.g. an integer orjson cannot encode
        return
    try:
        model = TickBatchIn.model_validate_json(raw)
    except ValidationError:
        model = None
    try:
        batch = parse_tick_batch(raw, now=NOW)
    except InvalidBodyError:
        batch = None
    if model is None:
        assert batch is None
        return
    in_range = all(
        datetime(1970, 1, 1, tzinfo=UTC) <= t.event_time <= NOW + timedelta(days=1)
        for t in model.ticks
    )
    if not in_range:
        assert batch is None
        return
    assert batch is not None
    for row, tick in zip(batch.rows, model.ticks, strict=True):
        assert row[0] == tick.symbol and row[1] == tick.asset_class.value
        assert Decimal(row[2]) == tick.price and Decimal(row[3]) == tick.size
        assert datetime.fromisoformat(row[4]) == tick.event_time
        assert row[5] == tick.venue
