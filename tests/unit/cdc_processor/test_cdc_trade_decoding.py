"""market.trades.v1 decoding: the lean path gives what `TradeExecuted` gives, and takes
nothing the contract refuses (those still reach the DLQ with the model's reason)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cdc_processor import decoding
from cdc_processor.decoding import DecodeError, Tick
from contracts.events import TradeExecuted
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

GOOD: dict[str, Any] = {
    "event_id": "coinbase:BTC-USD:123456",
    "venue": "coinbase",
    "symbol": "BTC-USD",
    "venue_symbol": "BTC-USD",
    "asset_class": "crypto",
    "trade_id": "123456",
    "price": "67012.50",
    "size": "0.0025",
    "side": "buy",
    "event_time": "2026-12-07T09:38:18.628555+00:00",
    "received_at": "2026-12-07T09:38:18.628571+00:00",
    "sequence": 99,
}


def by_model(document: Any) -> Tick:
    trade = TradeExecuted.model_validate(document)
    return Tick(
        trade.event_id, trade.symbol, trade.asset_class, trade.price, trade.size, trade.event_time
    )


def test_market_feeds_record_takes_the_lean_path_and_equals_the_model() -> None:
    assert decoding._lean_trade(GOOD) is not None  # the fast path is the one measured
    tick = decoding.decode_trade(orjson.dumps(GOOD))
    assert tick == by_model(GOOD)
    assert tick is not None and tick.event_time.tzinfo is UTC
    assert str(tick.price) == "67012.50"  # exact, trailing zero kept


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_time", "2026-12-07T10:38:18.628555+01:00"),  # converted to UTC by the model
        ("event_time", "2026-12-07T09:38:18.1234567Z"),  # 7 fractional digits
        ("event_time", "2026-12-07 09:38:18Z"),  # space separator
        ("price", "6.7012E+4"),  # exponent form
        ("price", 67012),  # a JSON integer
        ("size", " 0.5"),
        ("sequence", None),
    ],
)
def test_other_forms_the_contract_accepts_decode_as_the_model_does(field: str, value: Any) -> None:
    document = {**GOOD, field: value}
    assert decoding.decode_trade(orjson.dumps(document)) == by_model(document)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", 67012.5),  # a float: exactness already lost
        ("price", "NaN"),
        ("price", "1" * 21),  # 21 integer digits: no DECIMAL(38,18)
        ("size", "0." + "1" * 19),  # 19 fractional digits
        ("event_time", "2026-12-07T09:38:18"),  # naive
        ("event_time", "2026-13-07T09:38:18Z"),  # month 13
        ("asset_class", "bond"),
        ("side", "long"),
        ("symbol", 7),
        ("sequence", "99x"),
        ("event_id", None),
    ],
)
def test_what_the_contract_refuses_is_schema_invalid(field: str, value: Any) -> None:
    document = {**GOOD, field: value}
    with pytest.raises(ValidationError):
        TradeExecuted.model_validate(document)
    with pytest.raises(DecodeError) as raised:
        decoding.decode_trade(orjson.dumps(document))
    assert raised.value.reason == "schema_invalid"
    assert field in raised.value.detail  # the model's message names the field


def test_missing_field_and_non_object_are_schema_invalid() -> None:
    for document in ({k: v for k, v in GOOD.items() if k != "price"}, [GOOD], "trade"):
        with pytest.raises(DecodeError) as raised:
            decoding.decode_trade(orjson.dumps(document))
        assert raised.value.reason == "schema_invalid"


def test_not_json_is_undecodable_and_tombstone_is_skipped() -> None:
    with pytest.raises(DecodeError) as raised:
        decoding.decode_trade(b"{not json")
    assert raised.value.reason == "undecodable"
    assert decoding.decode_trade(None) is None and decoding.decode_trade(b"") is None


DECIMALS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"-?[0-9]{1,23}(\.[0-9]{0,21})?", fullmatch=True),
    st.text(max_size=8),
)
TIMES = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat),
    st.from_regex(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]"
                  r"(\.[0-9]{1,8})?(Z|[+-][01][0-9]:[0-5][0-9])?", fullmatch=True),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(price=DECIMALS, size=DECIMALS, event_time=TIMES)
def test_lean_path_never_disagrees_with_the_model(price: str, size: str, event_time: str) -> None:
    document = {**GOOD, "price": price, "size": size, "event_time": event_time}
    try:
        expected: Tick | None = by_model(document)
    except ValidationError:
        expected = None
    lean = decoding._lean_trade(document)
    if lean is not None:
        assert lean == expected  # the lean path only takes what the model takes, equal
    if expected is None:
        with pytest.raises(DecodeError):
            decoding.decode_trade(orjson.dumps(document))
    else:
        assert decoding.decode_trade(orjson.dumps(document)) == expected
